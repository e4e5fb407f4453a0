import sys

from binarycop.cli import main

sys.exit(main())

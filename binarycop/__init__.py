"""binarycop: crowd face-mask statistics from camera streams with binary neural networks."""

__version__ = "0.1.0"

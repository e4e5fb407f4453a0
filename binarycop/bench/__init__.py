"""The benchmarks behind ``binarycop bench``: the classifier backends side by side (``classifier``), the
face detectors (``faces``), the whole slice on the bundled clip (``slice``), many cameras at once (``pipeline``)
and a long run watching memory and latency (``soak``)."""

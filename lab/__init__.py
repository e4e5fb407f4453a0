"""The model lab: datasets, the masked-face synthesiser, training and batch-norm folding, cross-validation,
evaluation (crops, scenes, Grad-CAM, scans of still images) and the FPGA tooling (QONNX export, folding search and
throughput estimate).

The lab uses the runtime (``accel``) and ``detector``'s public crop functions; the runtime never imports the lab.
Needs the ``train`` extra for anything that touches torch.
"""

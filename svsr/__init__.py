"""svsr: a TensorRT deployment toolkit for StableVSR (video super-resolution with diffusion).

Layers (see README "Layout"): ``svsr.reference`` (exact PyTorch pipeline), ``svsr.export``
(ONNX graphs + manifest), ``svsr.engines`` (typed ONNX and TensorRT plans), ``svsr.runtime``
(torch-free schedule, backends, video I/O).
"""

__version__ = "0.1.0"

"""Typed (mixed-precision) ONNX graphs and TensorRT plans."""

"""Export the StableVSR networks as ONNX graphs and write manifest.json."""

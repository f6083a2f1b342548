"""Offline export: ONNX/TensorRT models, the Triton model repository and item indexing."""

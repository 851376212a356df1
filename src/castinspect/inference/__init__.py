"""Judging photos: the Predictor, its backends (PyTorch, ONNX Runtime, OpenVINO), ONNX export,
Grad-CAM heatmaps and verdict drawings."""

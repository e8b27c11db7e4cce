"""Prediction maps, their resizing back to the original size, and ONNX export."""

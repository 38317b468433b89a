"""ONNX export of the PFPLD network (:mod:`.export`)."""

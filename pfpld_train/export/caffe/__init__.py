"""Caffe export written by this project: schema subset (:mod:`.proto`), ONNX -> Caffe (:mod:`.convert`),
files and reference comparison (:mod:`.export`)."""

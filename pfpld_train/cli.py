"""``pfpld_train`` console script: a thin layer over the trainer."""
from __future__ import annotations

import sys

from landmark_unify.cli_base import make_main

COMMANDS = {
    "fit": "train PFPLD on a manifest",
    "evaluate": "score a checkpoint or an ONNX model on a manifest (NME, failure rate, AUC, pose MAE)",
    "predict": "detect faces in images and write landmarks, pose and overlays",
    "label": "detect faces in photos and write their predicted landmarks as a manifest of machine labels",
    "cache": "store enlarged face crops of a manifest in a memory-mapped array",
    "export": "export a checkpoint to ONNX, Caffe or an NNIE package",
    "quantize-check": "simulate int8 quantization of an ONNX model and report the accuracy drift",
}

main = make_main("pfpld_train", __doc__, "pfpld_train", COMMANDS)

if __name__ == "__main__":
    sys.exit(main())

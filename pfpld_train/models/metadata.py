"""The PFPLD network's input/output contract as written into exported models (no torch needed).

Tensor names of an exported network, the input conventions of known landmark models, and the keys of the metadata properties our ONNX exporter writes
(read back by :mod:`pfpld_train.evaluation.evaluate` when it scores an ONNX model).
"""

from __future__ import annotations

__all__ = ["INPUT_NAME", "INPUT_PRESETS", "METADATA_OUTPUTS", "METADATA_POSE_TRAINED", "METADATA_PREPROCESS",
           "OUTPUT_DOC", "OUTPUT_NAMES", "UNTRAINED_POSE_DOC"]

INPUT_NAME = "input"
OUTPUT_NAMES = ("pose", "landmarks")
METADATA_PREPROCESS = "pfpld_train.preprocess"
METADATA_OUTPUTS = "pfpld_train.outputs"
#: ``"false"`` when the exported network's pose branch was never trained (no training face had a pose).
METADATA_POSE_TRAINED = "pfpld_train.pose_trained"
OUTPUT_DOC = {
    "pose": "(N, 3) float32 radians, pitch, yaw, roll (300W-LP Pose_Para convention)",
    "landmarks": "(N, 196) float32 x0, y0, x1, y1 ... of the 98 WFLW points in crop units (0..1 of the crop side)",
}
#: What the ``pose`` output is when the pose branch was not trained.
UNTRAINED_POSE_DOC = "(N, 3) float32: UNTRAINED, no training face had a pose; not a head pose, do not use"

#: Input conventions of known landmark models: ``(channel order, mean, scale)``, ``x = (pixel - mean) * scale``.
#: ``pfpld`` is this project's network; the other two are the public reference models (FACTS section 8).
INPUT_PRESETS = {
    "pfpld": ("rgb", 0.0, 1 / 255),
    "pfld_ghostone": ("bgr", 127.5, 1 / 127.5),
    "proxyless_gaze": ("bgr", 0.0, 1 / 255),
}

"""The PFPLD network (:mod:`.pfpld`, needs torch), its checkpoint files (:mod:`.checkpoint`) and its exported
input/output contract (:mod:`.metadata`).

Names are exported lazily (no torch until used).
"""

from __future__ import annotations

from landmark_unify.lazy import lazy_exports

_EXPORTS = {
    "PFPLD": ".pfpld",
    "NUM_PARAMETERS": ".pfpld",
    "INPUT_SIZE": ".pfpld",
    "NUM_POINTS": ".pfpld",
    "build_model": ".pfpld",
    "count_parameters": ".pfpld",
    "pose_to_degrees": ".pfpld",
    "INPUT_NAME": ".metadata",
    "INPUT_PRESETS": ".metadata",
    "OUTPUT_NAMES": ".metadata",
    "METADATA_PREPROCESS": ".metadata",
    "METADATA_OUTPUTS": ".metadata",
    "CheckpointError": ".checkpoint",
    "load_checkpoint": ".checkpoint",
    "load_pfpld": ".checkpoint",
    "model_state_dict": ".checkpoint",
    "pfpld_weights": ".checkpoint",
    "save_checkpoint": ".checkpoint",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, globals(), _EXPORTS)

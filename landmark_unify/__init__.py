"""landmark-unify: one canonical 98-point layout for facial-landmark datasets.

Public names are imported lazily from their modules, so ``import landmark_unify`` stays cheap.
"""
from __future__ import annotations

from ._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    # layouts and maps
    "get_layout": "layouts",
    "list_layouts": "layouts",
    "Layout": "layouts",
    "Point": "layouts",
    "list_schemas": "maps",
    "to_canonical": "maps",
    "from_canonical": "maps",
    "flip": "maps",
    "compile_map": "maps",
    # manifests
    "read_manifest": "manifest",
    "write_manifest": "manifest",
    "validate_manifest": "manifest",
    "landmarks_array": "manifest",
    "valid_array": "manifest",
    "image_paths": "manifest",
    # readers and the build pipeline
    "read_source": "readers",
    "list_readers": "readers",
    "build_manifest": "build",
    "plan_units": "build",
    "process_unit": "build",
    "summarize_manifest": "summary",
    # curation
    "eye_aspect_ratio": "eyes",
    "eye_state": "eyes",
    "eye_columns": "eyes",
    "relabel_manifest_file": "pose",
    "load_face_model": "pose",
    "merge_manifest_files": "merge",
    "run_recipe": "recipes",
    "build_wflw2": "recipes",
    "render_manifest": "render",
    "write_report": "report",
    "balance_report": "report",
    "estimate_pose": "pose",
    "estimate_pose_pnp": "pose",
    "merge_manifests": "merge",
    # errors
    "LandmarkUnifyError": "errors",
    "ParseError": "errors",
    "SchemaError": "errors",
    "ManifestError": "errors",
    "MappingError": "errors",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, globals(), _EXPORTS)

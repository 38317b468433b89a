"""landmark-unify: one canonical 98-point layout for facial-landmark datasets.

Public names are imported lazily from their modules, so ``import landmark_unify`` stays cheap.
"""
from __future__ import annotations

from .lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    # layouts and maps
    "get_layout": "core.layouts",
    "list_layouts": "core.layouts",
    "Layout": "core.layouts",
    "Point": "core.layouts",
    "list_schemas": "core.maps",
    "to_canonical": "core.maps",
    "from_canonical": "core.maps",
    "flip": "core.maps",
    "compile_map": "core.maps",
    # manifests
    "read_manifest": "manifest",
    "read": "manifest",
    "validate": "manifest",
    "write_manifest": "manifest",
    "validate_manifest": "manifest",
    "FaceModel": "core.pose",
    "landmarks_array": "manifest",
    "valid_array": "manifest",
    "image_paths": "manifest",
    # readers and the build pipeline
    "read_source": "readers",
    "list_readers": "readers",
    "build_manifest": "ops.build",
    "plan_units": "ops.build",
    "process_unit": "ops.build",
    "summarize_manifest": "report.summary",
    # curation
    "eye_aspect_ratio": "core.eyes",
    "eye_state": "core.eyes",
    "eye_columns": "core.eyes",
    "source_eye_columns": "core.eyes",
    "relabel_manifest_file": "ops.relabel",
    "relabel_pose": "ops.relabel",
    "mine_closed_eyes": "ops.mine",
    "check_images": "ops.check_images",
    "load_face_model": "face_models",
    "build_wflw2": "ops.recipes",
    "render_manifest": "report.render",
    "write_report": "report.html",
    "balance_report": "report.html",
    "estimate_pose": "face_models.fit",
    "estimate_pose_pnp": "face_models.fit",
    "merge_manifests": "ops.merge",
    "merge_manifest_files": "ops.merge",
    "compare_manifests": "manifest",
    "export_coco": "ops.export",
    "audit_manifest": "ops.audit",
    "read_audit": "ops.audit",
    "coco_document": "ops.export",
    "register_engine": "engines",
    "get_engine": "engines",
    "RunOptions": "engines",
    # images: the one reader
    "read_image": "images",
    "image_info": "images",
    "ImageError": "images",
    # errors
    "LandmarkUnifyError": "errors",
    "ParseError": "errors",
    "SchemaError": "errors",
    "ManifestError": "errors",
    "MappingError": "errors",
    "ErrorPolicy": "errors",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, globals(), _EXPORTS)

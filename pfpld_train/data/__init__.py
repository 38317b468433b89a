"""Training data: standard crops (:mod:`.crop`), manifest arrays (:mod:`.arrays`), augmentation
(:mod:`.augmentation`), the crop cache (:mod:`.cache`), the dataset (:mod:`.dataset`), the seeded
sampler and loader (:mod:`.sampler`); images are read by :func:`landmark_unify.images.read_image`.

Names are exported lazily (no torch or OpenCV until used).
"""

from __future__ import annotations

from landmark_unify.lazy import lazy_exports

_EXPORTS = {
    "CROP_SIZE": ".crop",
    "standard_crop_params": ".crop",
    "face_crop_params": ".crop",
    "complete_points": ".crop",
    "box_crop_params": ".crop",
    "crop_image": ".crop",
    "crop_to_image": ".crop",
    "image_to_crop": ".crop",
    "DataError": ".arrays",
    "FaceArrays": ".arrays",
    "pose_array": ".arrays",
    "split_by_image": ".arrays",
    "AugmentConfig": ".augmentation",
    "CACHE_FORMAT": ".cache",
    "CacheError": ".cache",
    "CropCache": ".cache",
    "build_cache": ".cache",
    "enlarged_windows": ".cache",
    "FaceDataset": ".dataset",
    "EpochSampler": ".sampler",
    "make_loader": ".sampler",
    "to_input": ".sampler",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, globals(), _EXPORTS)

"""pfpld_train: the PFPLD landmark and head-pose network trained on landmark-unify manifests."""
__version__ = "0.1.0"

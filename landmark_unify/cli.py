"""``landmark_unify`` console script: a thin layer over the library."""
from __future__ import annotations

import sys

from .cli_base import make_main

COMMANDS = {
    "build-manifest": "read datasets in their official layout and write a canonical manifest",
    "inspect": "print the summary of a manifest",
    "validate": "check a manifest against the spec",
    "schemas": "list point layouts and their maps onto the canonical layout",
    "mine-closed-eyes": "select faces with closed eyes",
    "relabel-pose": "fit head pose from landmarks and fill pitch, yaw, roll",
    "merge": "merge manifests with per-source weights and duplicate detection",
    "find-duplicates": "find copies of a face (exact, near, mirrored, by provenance) and leaks across splits",
    "render": "draw a contact sheet of faces with their landmarks",
    "report": "write histograms of pose and eye aspect ratio as PNG plus an HTML page",
    "export": "write a manifest as a COCO keypoint file (MMPose, pycocotools, FiftyOne)",
    "audit": "rank faces by how suspect their landmarks are, point by point, with named findings",
}

#: commands other installed packages add: ``label`` (machine labels for photos) comes from pfpld_train, which
#: runs the models, through this entry-point group (setup.cfg), so nothing here imports the trainer
PLUGIN_GROUP = "landmark_unify.commands"

main = make_main("landmark_unify", __doc__, "landmark_unify", COMMANDS, plugin_group=PLUGIN_GROUP)

if __name__ == "__main__":
    sys.exit(main())

"""Every module, file and Python name of the project that the docs (docs/, README.md) name exists."""
from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = sorted((REPO / "docs").rglob("*.md")) + [REPO / "README.md"]
#: ``landmark_unify.core.maps.to_canonical``, ``landmark_unify/core/pose/fit.py``, ``tests/pfpld_train/...``
NAMED = re.compile(r"(?<![\w./-])((?:tests/|benchmarks/|tools/)?(?:landmark_unify|pfpld_train)(?:[./][A-Za-z_]\w*)*)")


def _metadata_keys() -> set[str]:
    """Keys of the exported models' metadata (``pfpld_train.preprocess``): named like modules, but keys."""
    from pfpld_train.models import metadata

    return {v for k, v in vars(metadata).items() if k.startswith("METADATA_") and isinstance(v, str)}


def _entry_point_groups() -> set[str]:
    """The entry-point groups setup.cfg declares (``landmark_unify.landmark_models``): named like modules,
    but groups other packages register under."""
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg", encoding="utf-8")
    return {k for k in cfg["options.entry_points"] if k != "console_scripts"}


def _exists(name: str) -> bool:
    if "/" in name:
        return (REPO / name).exists() or (REPO / f"{name}.py").exists()
    parts = name.split(".")
    for i in range(len(parts), 0, -1):  # the longest prefix that is a module; the rest are its attributes
        base = REPO.joinpath(*parts[:i])
        if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
            obj = importlib.import_module(".".join(parts[:i]))
            for attr in parts[i:]:
                if not hasattr(obj, attr):
                    return False
                obj = getattr(obj, attr)
            return True
    return False


def _named(path: Path) -> set[str]:
    return {m.group(1).rstrip(".") for m in NAMED.finditer(path.read_text(encoding="utf-8"))}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_named_module_exists(doc):
    keys = _metadata_keys() | _entry_point_groups()
    missing = sorted(n for n in _named(doc) - keys if not _exists(n))
    assert missing == [], f"{doc.relative_to(REPO)} names what does not exist: {missing}"


def test_the_check_sees_names_and_catches_a_moved_module(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("See `landmark_unify.core.maps.to_canonical`, `landmark_unify/core/pose/fit.py`, "
                   "`landmark_unify.distributed` and `landmark_unify/maps.py`.", encoding="utf-8")
    names = _named(doc)
    assert names == {"landmark_unify.core.maps.to_canonical", "landmark_unify/core/pose/fit.py",
                     "landmark_unify.distributed", "landmark_unify/maps.py"}
    assert sorted(n for n in names if not _exists(n)) == ["landmark_unify.distributed", "landmark_unify/maps.py"]
    assert len(DOCS) > 10

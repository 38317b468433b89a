"""Shared fixtures. Tests that need ../shared/data skip when it is absent, except under CI=true."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# helpers shared by the trainer's tests (``import pfpld_support``); tests import in importlib mode
sys.path.insert(0, str(Path(__file__).resolve().parent / "pfpld_train"))
SHARED_DATA = Path(os.environ.get("LANDMARK_UNIFY_SHARED", REPO.parent / "shared")) / "data"


def _require(path: Path) -> Path:
    if not path.exists():
        reason = f"real sample data not found at {path}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (required under CI=true)")
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of the real sample data (``../shared/data``)."""
    return _require(SHARED_DATA)


@pytest.fixture(scope="session")
def shared_manifest(shared_data, tmp_path_factory):
    """``get(kind, folder) -> Path``: the manifest of one shared sample (``KIND=../shared/data/FOLDER``),
    built once per session. Read-only for the tests: one that changes faces writes its own copy."""
    import landmark_unify as lu

    built: dict = {}

    def get(kind: str, folder: str) -> Path:
        if (kind, folder) not in built:
            out = tmp_path_factory.mktemp("shared_manifest") / f"{kind}.parquet"
            lu.build_manifest([f"{kind}={shared_data / folder}"], out, progress=False)
            built[kind, folder] = out
        return built[kind, folder]

    return get


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def html_page_check():
    """``check(path) -> list of problems`` of an HTML page in headless Chromium (``tests/html_check.py``);
    skips with a reason when no Chromium is installed, fails under CI=true (``.ci/run`` installs it)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from html_check import check_html_page, chromium_path

    if chromium_path() is None:
        reason = "no Chromium installed (apt-get install chromium) for the headless page check"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (required under CI=true)")
        pytest.skip(reason)
    return check_html_page

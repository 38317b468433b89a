"""notebooks/schema_mapper.ipynb runs top to bottom on the bundled demo data."""
from __future__ import annotations

import nbformat
import pytest


def test_schema_mapper_notebook_executes(repo_root):
    nbclient = pytest.importorskip("nbclient")
    path = repo_root / "notebooks/schema_mapper.ipynb"
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "round trip exact" in text and "strict" in text
    assert any("image/png" in o.get("data", {}) for o in outputs)

"""The import graph of pfpld_train, read with ``ast`` from the package source (function-level imports
included, relative imports resolved):

- no cycles among pfpld_train modules;
- layers run one way: ``commands`` -> ``export`` -> ``train`` / ``inference`` -> ``evaluation`` -> ``models`` /
  ``data`` -> landmark_unify's public API (``models`` and ``data`` import neither the layer above nor
  ``commands``; nothing but ``cli`` imports ``commands``);
- no landmark_unify private module (``landmark_unify._x``) or private name (``_x``) is imported;
- outside ``commands`` (which keep imports lazy for a fast CLI start), a function-level import is only of a
  heavy optional dependency (torch, OpenCV, onnx, onnxruntime, onnxslim, protobuf, face_alignment) or of a pfpld_train
  module that imports one at its top.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "pfpld_train"
HEAVY = {"torch", "cv2", "onnx", "onnxruntime", "onnxslim", "google", "face_alignment"}
#: Layer of each top-level part of the package, bottom first.
#: layers, bottom first: a package imports only packages of lower layers (never one of its own layer)
LAYERS = {"models": 0, "data": 0, "evaluation": 1, "train": 2, "inference": 2, "export": 3, "commands": 4, "cli": 5}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("pfpld_train", *path.relative_to(PACKAGE).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path):
    """``(target module, imported names, line, top_level)`` for every import of the module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(n) for n in tree.body}
    base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, (), node.lineno, id(node) in top
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base[: len(base) - (node.level - 1)]
                target = ".".join(parts + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = tuple(a.name for a in node.names)
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES]
            yield target, tuple(n for n in names if f"{target}.{n}" not in MODULES), node.lineno, id(node) in top
            for s in subs:
                yield s, (), node.lineno, id(node) in top


def _own(target: str) -> str | None:
    """The pfpld_train module ``target`` refers to (the longest existing prefix), or None."""
    while target not in MODULES and "." in target:
        target = target.rsplit(".", 1)[0]
    return target if target in MODULES and target.startswith("pfpld_train") else None


def _graph() -> dict[str, set[str]]:
    graph = {m: set() for m in MODULES}
    for name, path in MODULES.items():
        for target, _, _, _ in _imports(name, path):
            own = _own(target)
            if own and own != name:
                graph[name].add(own)
    return graph


def _layer(name: str) -> int | None:
    parts = name.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def test_import_graph_sees_the_package():
    graph = _graph()
    assert len(graph) > 30 and graph["pfpld_train.train.loop"] >= {"pfpld_train.data.dataset", "pfpld_train.train.loss"}


def test_no_import_cycles_among_pfpld_train_modules():
    graph = _graph()
    # A module importing one of its own packages' __init__ is not a cycle through it.
    edges = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(m, path):
        state[m] = 1
        for t in sorted(edges[m]):
            if state.get(t) == 1:
                cycles.append(path[path.index(t):] + [t])
            elif t not in state:
                visit(t, path + [t])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    assert cycles == []


def test_layers_run_from_commands_down_to_models_and_data():
    wrong = []
    for m, targets in _graph().items():
        for t in targets:
            lm, lt = _layer(m), _layer(t)
            if lm is None or lt is None:
                continue  # the package's own __init__ (lazy names only)
            if lt > lm or (lt == lm and m.split(".")[1] != t.split(".")[1]):
                wrong.append(f"{m} imports {t}")
    assert wrong == []


def test_no_private_landmark_unify_imports():
    private = []
    for name, path in MODULES.items():
        for target, names, line, _ in _imports(name, path):
            if not target.startswith("landmark_unify"):
                continue
            rel = path.relative_to(PACKAGE.parent)
            if any(p.startswith("_") for p in target.split(".")):
                private.append(f"{rel}:{line} imports private module {target}")
            private += [f"{rel}:{line} imports private name {target}.{n}" for n in names
                        if n.startswith("_") and not n.startswith("__")]
    assert private == []


def _top_level_heavy(module: str) -> bool:
    return any(t.split(".")[0] in HEAVY for t, _, _, top in _imports(module, MODULES[module]) if top)


def test_function_level_imports_are_only_heavy_dependencies():
    hidden = []
    for name, path in MODULES.items():
        if name.startswith("pfpld_train.commands"):
            continue
        for target, _, line, top in _imports(name, path):
            if top or target.split(".")[0] in HEAVY:
                continue
            own = _own(target)
            if own is not None and _top_level_heavy(own):
                continue
            hidden.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target} inside a function")
    assert hidden == [], "move these imports to the top of the module"

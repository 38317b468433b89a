"""The import graph of both packages runs one way: no cycles (function-level imports included), no module
importing another package's private names, and landmark_unify's layers in their order."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("landmark_unify", "pfpld_train")
#: landmark_unify's layers, bottom first: a module may import its own layer and those below, never above.
LAYERS = (
    ("landmark_unify", "landmark_unify.errors", "landmark_unify.io", "landmark_unify.lazy", "landmark_unify.outputs",
     "landmark_unify.images"),
    ("landmark_unify.core",),
    ("landmark_unify.manifest",),
    ("landmark_unify.readers", "landmark_unify.face_models"),
    ("landmark_unify.engines",),
    ("landmark_unify.report",),
    ("landmark_unify.ops",),
    ("landmark_unify.cli_base",),
    ("landmark_unify.commands", "landmark_unify.cli"),
)


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (REPO / pkg).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]):
    """(imported module, imported names, line) for every project import of a module, anywhere in it."""
    is_pkg = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in PACKAGES:
                    yield a.name, (), node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] not in PACKAGES:
                continue
            names = tuple(a.name for a in node.names)
            # "from pkg import module" imports the submodule
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
            yield target, tuple(n for n in names if f"{target}.{n}" not in modules), node.lineno
            for s in subs:
                yield s, (), node.lineno


def _graph():
    modules = _modules()
    graph = {m: set() for m in modules}
    private = []
    for name, path in modules.items():
        for target, names, line in _imports(name, path, modules):
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in modules and target != name:
                graph[name].add(target)
            for n in names:
                if n.startswith("_") and not n.startswith("__") and target.split(".")[0] != name.split(".")[0]:
                    private.append(f"{path.relative_to(REPO)}:{line} imports {target}.{n}")
                if n.startswith("_") and not n.startswith("__") and not name.startswith(target.rsplit(".", 1)[0]):
                    private.append(f"{path.relative_to(REPO)}:{line} imports {target}.{n} from another package")
            if any(p.startswith("_") and not p.startswith("__") for p in target.split(".")) and \
                    target.split(".")[0] != name.split(".")[0]:
                private.append(f"{path.relative_to(REPO)}:{line} imports private module {target}")
    return graph, private


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _ancestors(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def test_no_import_cycles():
    graph, _ = _graph()
    # a module importing its own package's __init__ (for re-exported names) is not a cycle through it
    edges = {m: {t for t in ts if t not in _ancestors(m)} for m, ts in graph.items()}
    assert _cycles(edges) == []


def test_no_private_names_across_packages():
    _, private = _graph()
    assert private == []


def _layer(name: str) -> int | None:
    best = None
    for i, layer in enumerate(LAYERS):
        for prefix in layer:
            if name == prefix or name.startswith(prefix + "."):
                if best is None or len(prefix) > len(best[1]):
                    best = (i, prefix)
    return None if best is None else best[0]


def test_landmark_unify_layers_run_from_commands_down_to_core():
    graph, _ = _graph()
    wrong = []
    for m, targets in graph.items():
        if not m.startswith("landmark_unify"):
            continue
        for t in targets:
            if t.startswith("landmark_unify") and t not in _ancestors(m) and _layer(t) > _layer(m):
                wrong.append(f"{m} (layer {_layer(m)}) imports {t} (layer {_layer(t)})")
    assert wrong == []


def test_pfpld_train_uses_only_public_landmark_unify_modules():
    graph, _ = _graph()
    used = sorted({t for m, ts in graph.items() if m.startswith("pfpld_train") for t in ts
                   if t.startswith("landmark_unify")})
    assert used, "pfpld_train builds on landmark_unify"
    assert not [t for t in used if any(p.startswith("_") for p in t.split("."))]


@pytest.mark.parametrize("package", PACKAGES)
def test_graph_sees_the_packages(package):
    graph, _ = _graph()
    assert sum(m.startswith(package) for m in graph) > 10

"""Build recipes: named multi-source builds run by ``build-manifest --recipe NAME``.

``wflw2``: WFLW + the closed-eye faces of LaPa + 300W-LP in one manifest, with a balance report.

1. each source is built into a temporary staging folder beside OUT, removed afterwards, also after an error
   (``keep_parts=True`` keeps it as ``OUT.parts/``) (``build_manifest``, with the command's
   ``--policy``, ``--on-error`` and ``--check-images``);
2. LaPa keeps only its faces with a closed eye (either eye's EAR <= the default threshold,
   :func:`landmark_unify.ops.mine.mine_closed_eyes`);
3. every staged manifest gets its head pose fitted (:func:`landmark_unify.ops.relabel.relabel_pose`:
   filled where the source has none, kept beside 300W-LP's own);
4. they are merged (:func:`landmark_unify.ops.merge.merge_manifests`) with the per-source weights and
   duplicate detection, and ``OUT.balance.json`` / ``OUT.balance.md`` are written.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..core.eyes import CLOSED_THRESHOLD
from ..errors import LandmarkUnifyError
from ..manifest import read_manifest
from ..report.html import write_balance
from .build import build_manifest, parse_sources
from .merge import merge_manifests, parse_weights
from .mine import mine_closed_eyes
from .relabel import relabel_pose


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    kinds: tuple[str, ...]  # reader kinds it needs, one source each
    default_output: str
    default_weights: dict  # kind -> weight


RECIPES = {
    "wflw2": Recipe(
        "wflw2",
        "WFLW + LaPa closed-eye faces + 300W-LP, pose fitted where missing",
        ("wflw", "lapa", "300wlp"),
        "manifests/wflw2.parquet",
        {"wflw": 1.0, "lapa": 1.0, "300wlp": 1.0},
    ),
}


def list_recipes() -> list[str]:
    return sorted(RECIPES)


def _sources_by_kind(recipe: Recipe, specs) -> dict:
    sources = parse_sources(specs)
    by_kind: dict = {}
    for s in sources:
        if s.kind not in recipe.kinds:
            raise LandmarkUnifyError(f"recipe {recipe.name!r} takes sources of kinds {list(recipe.kinds)}; "
                                     f"got {s.kind!r} ({s.spec()})")
        if s.kind in by_kind:
            raise LandmarkUnifyError(f"recipe {recipe.name!r}: two sources of kind {s.kind!r}")
        by_kind[s.kind] = s
    missing = [k for k in recipe.kinds if k not in by_kind]
    if missing:
        raise LandmarkUnifyError(f"recipe {recipe.name!r} needs --source {' --source '.join(k + '=ROOT' for k in missing)}")
    return by_kind


def build_wflw2(sources, out, *, policy: str = "strict", on_error: str = "raise", check_images: bool = False,
                weights=None, closed_threshold: float | None = None, closed_mode: str = "either",
                fit_pose: bool = True, progress: bool = True, log=print, command: str | None = None,
                keep_parts: bool = False, engine="local", workers: int | None = None, scheduler: str | None = None,
                mean_shape=None, shape_key: str | None = None) -> dict:
    """Run the ``wflw2`` recipe (see the module docstring). ``weights``: per source label (or kind)
    ``{name: w}`` or ``["NAME=W"]`` over the recipe's defaults. ``command``: the command line, recorded in
    the metadata with the recipe's settings (under ``recipe``). Returns the balance report dict, with the
    merge report's figures under ``"merge"`` and, with ``keep_parts``, the staged files under ``"parts"``.
    engine, workers, scheduler: where every step runs (the engine is started once for the whole recipe).
    mean_shape, shape_key: the face model of the pose fit."""
    from ..engines import engine_context

    recipe = RECIPES["wflw2"]
    by_kind = _sources_by_kind(recipe, sources)

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    options = dict(policy=policy, on_error=on_error, check_images=check_images, weights=weights,
                   threshold=CLOSED_THRESHOLD if closed_threshold is None else closed_threshold,
                   closed_mode=closed_mode, fit_pose=fit_pose, progress=progress, log=log, command=command,
                   mean_shape=mean_shape, shape_key=shape_key)
    with engine_context(engine, workers, scheduler) as eng:
        if keep_parts:
            parts = out.with_name(out.name.removesuffix(".parquet") + ".parts")
            return _run_wflw2(recipe, by_kind, out, parts, engine=eng, **options)
        with tempfile.TemporaryDirectory(prefix=f".{out.name}.parts-", dir=out.parent) as tmp:
            balance = _run_wflw2(recipe, by_kind, out, Path(tmp), engine=eng, **options)
    balance.pop("parts", None)
    return balance


def _run_wflw2(recipe, by_kind, out: Path, parts: Path, *, policy, on_error, check_images, weights, threshold,
               closed_mode, fit_pose, progress, log, command, mean_shape, shape_key, engine) -> dict:
    given = parse_weights(weights)
    w_by_label = {}
    for kind, src in by_kind.items():
        w_by_label[src.label] = given.get(src.label, given.get(kind, recipe.default_weights[kind]))
    unknown = set(given) - set(w_by_label) - set(by_kind)
    if unknown:
        raise LandmarkUnifyError(f"weights for {sorted(unknown)}, which are not sources of this recipe")

    staged = []
    for kind in recipe.kinds:
        src = by_kind[kind]
        path = parts / f"{src.label}.parquet"
        rep = build_manifest([src], path, policy=policy, on_error=on_error, check_images=check_images,
                             command=f"recipe {recipe.name}", progress=progress, engine=engine)
        log(f"{recipe.name}: {src.label}: {rep.num_faces} faces" + (f", {len(rep.skipped)} skipped" if rep.skipped else ""))
        if kind == "lapa":
            closed = parts / f"{src.label}.closed.parquet"
            run = mine_closed_eyes(path, closed, threshold=threshold, mode=closed_mode, engine=engine, progress=progress)
            kept, total = int(run.extra.get("kept", 0)), int(run.extra.get("total", 0))
            log(f"{recipe.name}: {src.label}: kept {kept} of {total} faces with {closed_mode} eye closed (EAR <= {threshold:g})")
            path = closed
        if fit_pose:
            posed = path.with_name(path.name.removesuffix(".parquet") + ".pose.parquet")
            run = relabel_pose(path, posed, mean_shape=mean_shape, shape_key=shape_key, engine=engine, progress=progress)
            counts = {k: int(run.extra.get(k, 0)) for k in ("filled", "kept", "unknown")}
            log(f"{recipe.name}: {src.label}: pose fitted {counts['filled']}, dataset pose kept {counts['kept']}, "
                f"unknown {counts['unknown']}")
            path = posed
        staged.append(path)
    settings = {"name": recipe.name, "sources": [by_kind[k].spec() for k in recipe.kinds], "policy": policy,
                "on_error": on_error, "check_images": bool(check_images), "weights": w_by_label,
                "closed_threshold": threshold, "closed_mode": closed_mode, "fit_pose": bool(fit_pose)}
    merge = merge_manifests(staged, out, w_by_label, progress=progress, engine=engine,
                            metadata={"command": command or f"recipe {recipe.name}", "recipe": settings})
    df = read_manifest(out)
    js, md, balance = write_balance(df, out, title=f"{recipe.name}: {out.name}")
    balance["merge"] = {"rows_in": merge.rows_in, "rows_out": merge.rows_out, "weights": merge.weights,
                        "duplicates": len(merge.duplicates)}
    balance["parts"] = [str(p) for p in staged]
    balance["report_files"] = [str(js), str(md)]
    return balance

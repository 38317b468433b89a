"""Build recipes: named multi-source builds run by ``build-manifest --recipe NAME``.

``wflw2``: WFLW + the closed-eye faces of LaPa + 300W-LP in one manifest, with a balance report.

1. each source is built into a temporary staging folder beside OUT, removed afterwards, also after an error
   (``keep_parts=True`` keeps it as ``OUT.parts/``) (``build_manifest``, with the command's
   ``--policy``, ``--on-error`` and ``--check-images``); with ``splits`` only the named splits of a source
   are kept (``--splits wflw=train,lapa=train,val``);
2. LaPa keeps only its faces with a closed eye (either eye's EAR <= the default threshold,
   :func:`landmark_unify.ops.mine.mine_closed_eyes`);
3. every staged manifest gets its head pose fitted (:func:`landmark_unify.ops.relabel.relabel_pose`:
   filled where the source has none, kept beside 300W-LP's own);
4. they are merged (:func:`landmark_unify.ops.merge.merge_manifests`) with the per-source weights and
   duplicate detection, and ``OUT.balance.json`` / ``OUT.balance.md`` are written.

A training recipe warns (``log`` and ``warnings`` in the balance report and the metadata) when it takes
faces of a test or validation split, and, without ``check_images``, how many faces name an image file that
does not exist. The output depends only on the sources and options: the staging folder's name is not
recorded, so two identical runs give the same bytes.
"""
from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pyarrow.parquet as pq

from ..core.eyes import CLOSED_THRESHOLD
from ..engines import RunOptions
from ..errors import LandmarkUnifyError
from ..manifest import derived_metadata, read_columns, read_manifest
from ..outputs import current, transactional
from ..report.html import write_balance
from .build import build_manifest, parse_sources
from .merge import merge_manifests, parse_weights
from .mine import mine_closed_eyes
from .relabel import relabel_pose
from .runner import map_manifest

#: split names taken as held-out data (a training recipe warns when it takes their faces)
HELD_OUT_SPLIT = re.compile(r"test|val", re.IGNORECASE)


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    kinds: tuple[str, ...]  # reader kinds it needs, one source each
    default_output: str
    default_weights: dict  # kind -> weight
    steps: tuple[str, ...] = ()  # what it does, for --help
    build: Callable[..., dict] | None = None  # runs it: (sources, out, **options) -> balance report



def recipe_help() -> str:
    """The recipes, for ``build-manifest --help``."""
    lines = ["recipes (--recipe NAME):"]
    for name, r in sorted(RECIPES.items()):
        lines.append(f"  {name}: {r.description}")
        lines.append(f"    sources: {' '.join('--source ' + k + '=ROOT' for k in r.kinds)}")
        lines += [f"    {i}. {step}" for i, step in enumerate(r.steps, 1)]
        lines.append(f"    default output {r.default_output}; weights "
                     + ", ".join(f"{k} {w:g}" for k, w in r.default_weights.items()) + " (--weight SOURCE=W)")
    return "\n".join(lines)


def parse_splits(items) -> dict[str, tuple[str, ...]]:
    """``--splits`` values to ``{source label or kind: splits}``: ``"wflw=train,lapa=train,val"`` (a name
    without ``=`` adds a split to the source before it) or a mapping; repeatable."""
    if not items:
        return {}
    if isinstance(items, dict):
        return {str(k): tuple([v] if isinstance(v, str) else v) for k, v in items.items()}
    out: dict[str, list[str]] = {}
    current = None
    for item in ([items] if isinstance(items, str) else items):
        for tok in (t.strip() for t in str(item).split(",")):
            if not tok:
                continue
            if "=" in tok:
                current, _, split = (x.strip() for x in tok.partition("="))
                if not current or not split:
                    raise LandmarkUnifyError(f"--splits: expected SOURCE=SPLIT[,SPLIT...]; got {tok!r}")
                out.setdefault(current, []).append(split)
            elif current is None:
                raise LandmarkUnifyError(f"--splits: {tok!r} names no source; write SOURCE=SPLIT[,SPLIT...]")
            else:
                out[current].append(tok)
    return {k: tuple(dict.fromkeys(v)) for k, v in out.items()}


def _keep_splits(splits: tuple[str, ...], df):
    keep = df["split"].isin(list(splits)).to_numpy()
    return df[keep].reset_index(drop=True), {"kept": int(keep.sum()), "total": len(df)}


def _missing_images(path: Path, root: str) -> tuple[int, int]:
    """(faces whose image file does not exist, faces) of the manifest ``path``; a stat per image."""
    t = read_columns(path, ["image_path"])
    names = t.column("image_path").to_pylist()
    base = Path(root)  # as the build read it (relative to the working folder)
    exists = {n: os.path.isfile(base / n) for n in dict.fromkeys(names)}
    return sum(not exists[n] for n in names), len(names)


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


@transactional
def build_wflw2(sources, out, *, policy: str = "strict", on_error: str = "raise", check_images: bool = False,
                weights=None, closed_threshold: float | None = None, closed_mode: str = "either",
                fit_pose: bool = True, log=print, command: str | None = None, keep_parts: bool = False,
                mean_shape=None, shape_key: str | None = None, splits=None, exclude=None, exclusion_meta=None,
                run: RunOptions | None = None, **engine) -> dict:
    """Run the ``wflw2`` recipe (see the module docstring). ``weights``: per source label (or kind)
    ``{name: w}`` or ``["NAME=W"]`` over the recipe's defaults. ``command``: the command line, recorded in
    the metadata with the recipe's settings (under ``recipe``). Returns the balance report dict, with the
    merge report's figures under ``"merge"`` and, with ``keep_parts``, the staged files under ``"parts"``.
    run: where every step runs (:class:`~landmark_unify.engines.RunOptions`, or its fields as keywords; the
    engine is started once for the whole recipe; no ``single_file``).
    mean_shape, shape_key: the face model of the pose fit. splits: the splits to keep per source label or kind
    (``{"wflw": ["train"]}`` or ``["wflw=train,lapa=train,val"]``; default: every split, with a warning for
    held-out ones). exclude, exclusion_meta: ``{sample_id: reason}`` of faces the merge leaves out
    (:func:`landmark_unify.ops.exclude.exclusions`: ``--exclude``, ``--drop-leaks``), listed with their reasons
    in ``OUT.excluded.jsonl``."""
    run = RunOptions.of(run, **engine)
    if run.single_file is not None:
        raise LandmarkUnifyError("a recipe writes one manifest file; single_file does not apply")
    recipe = RECIPES["wflw2"]
    by_kind = _sources_by_kind(recipe, sources)

    out = Path(out)
    current().manifest(out)  # each step declares its own inputs
    options = dict(policy=policy, on_error=on_error, check_images=check_images, weights=weights,
                   threshold=CLOSED_THRESHOLD if closed_threshold is None else closed_threshold,
                   closed_mode=closed_mode, fit_pose=fit_pose, log=log, command=command,
                   mean_shape=mean_shape, shape_key=shape_key, splits=parse_splits(splits),
                   exclude=dict(exclude or {}), exclusion_meta=dict(exclusion_meta or {}))
    with run.started() as run:
        if keep_parts:
            parts = out.with_name(out.name.removesuffix(".parquet") + ".parts")
            return _run_wflw2(recipe, by_kind, out, parts, run=run, **options)
        with tempfile.TemporaryDirectory(prefix=f".{out.name}.parts-", dir=out.parent) as tmp:
            balance = _run_wflw2(recipe, by_kind, out, Path(tmp), run=run, **options)
    balance.pop("parts", None)
    return balance


def _run_wflw2(recipe, by_kind, out: Path, parts: Path, *, policy, on_error, check_images, weights, threshold,
               closed_mode, fit_pose, log, command, mean_shape, shape_key, run, splits, exclude,
               exclusion_meta) -> dict:
    given = parse_weights(weights)
    w_by_label = {}
    for kind, src in by_kind.items():
        w_by_label[src.label] = given.get(src.label, given.get(kind, recipe.default_weights[kind]))
    unknown = set(given) - set(w_by_label) - set(by_kind)
    if unknown:
        raise LandmarkUnifyError(f"weights for {sorted(unknown)}, which are not sources of this recipe")
    unknown = set(splits) - {s.label for s in by_kind.values()} - set(by_kind)
    if unknown:
        raise LandmarkUnifyError(f"--splits for {sorted(unknown)}, which are not sources of this recipe; "
                                 f"sources: {[s.label for s in by_kind.values()]}")
    warnings: list[str] = []

    def warn(text: str) -> None:
        warnings.append(text)
        log(f"{recipe.name}: warning: {text}")

    staged = []
    for kind in recipe.kinds:
        src = by_kind[kind]
        path = parts / f"{src.label}.parquet"
        rep = build_manifest([src], path, policy=policy, on_error=on_error, check_images=check_images,
                             command=f"recipe {recipe.name}", run=run)
        log(f"{recipe.name}: {src.label}: {rep.num_faces} faces" + (f", {len(rep.skipped)} skipped" if rep.skipped else ""))
        chosen = splits.get(src.label, splits.get(kind))
        path = _select_splits(recipe, src, path, chosen, run, log)
        _warn_about(src, path, check_images, warn, chosen=bool(chosen))
        if kind == "lapa":
            closed = parts / f"{src.label}.closed.parquet"
            mined = mine_closed_eyes(path, closed, threshold=threshold, mode=closed_mode, run=run)
            kept, total = int(mined.extra.get("kept", 0)), int(mined.extra.get("total", 0))
            log(f"{recipe.name}: {src.label}: kept {kept} of {total} faces with {closed_mode} eye closed (EAR <= {threshold:g})")
            path = closed
        if fit_pose:
            posed = path.with_name(path.name.removesuffix(".parquet") + ".pose.parquet")
            fitted = relabel_pose(path, posed, mean_shape=mean_shape, shape_key=shape_key, run=run)
            counts = {k: int(fitted.extra.get(k, 0)) for k in ("filled", "kept", "unknown")}
            log(f"{recipe.name}: {src.label}: pose fitted {counts['filled']}, dataset pose kept {counts['kept']}, "
                f"unknown {counts['unknown']}")
            path = posed
        staged.append(path)
    settings = {"name": recipe.name, "sources": [by_kind[k].spec() for k in recipe.kinds], "policy": policy,
                "on_error": on_error, "check_images": bool(check_images), "weights": w_by_label,
                "closed_threshold": threshold, "closed_mode": closed_mode, "fit_pose": bool(fit_pose),
                "splits": {k: list(v) for k, v in sorted(splits.items())}, "warnings": warnings}
    # the staged parts by their names in OUT.parts/, not the temporary folder's (a random name): same bytes
    merged_from = [{"path": f"{out.name.removesuffix('.parquet')}.parts/{p.name}",
                    "rows": pq.ParquetFile(p).metadata.num_rows} for p in staged]
    for entry, p in zip(merged_from, staged):
        entry["sources"] = sorted(set(read_columns(p, ["source"]).column("source").to_pylist()))
    merge = merge_manifests(staged, out, w_by_label, run=run,
                            metadata={"command": command or f"recipe {recipe.name}", "recipe": settings,
                                      "merged_from": merged_from},
                            exclude=exclude, exclusion_meta=exclusion_meta)
    df = read_manifest(out)
    js, md, balance = write_balance(df, out, title=f"{recipe.name}: {out.name}")
    balance["merge"] = {"rows_in": merge.rows_in, "rows_out": merge.rows_out, "weights": merge.weights,
                        "duplicates": len(merge.duplicates), "excluded": len(merge.excluded)}
    if merge.excluded:
        log(f"{recipe.name}: excluded {len(merge.excluded)} faces (--exclude / --drop-leaks); each id and reason in "
            f"{out.name.removesuffix('.parquet')}.excluded.jsonl")
    balance["parts"] = [str(p) for p in staged]
    balance["warnings"] = warnings
    balance["report_files"] = [str(js), str(md)]
    return balance


def _select_splits(recipe, src, path: Path, wanted, run, log) -> Path:
    """The staged manifest ``path`` with only the splits ``wanted`` (all when None)."""
    if not wanted:
        return path
    have = sorted(set(read_columns(path, ["split"]).column("split").to_pylist()))
    missing = [s for s in wanted if s not in have]
    if missing:
        raise LandmarkUnifyError(f"--splits {src.label}={','.join(wanted)}: no faces of split(s) {missing} in "
                                 f"{src.spec()}; its splits: {have}")
    kept = path.with_name(path.name.removesuffix(".parquet") + ".splits.parquet")
    res = map_manifest(path, kept, partial(_keep_splits, tuple(wanted)), run=run,
                       metadata=lambda meta, sums: derived_metadata(meta, path, kept, f"recipe {recipe.name}: splits",
                                                                    splits=list(wanted)))
    log(f"{recipe.name}: {src.label}: kept {int(res.extra.get('kept', 0))} of {int(res.extra.get('total', 0))} "
        f"faces of split(s) {', '.join(wanted)}")
    return kept


def _warn_about(src, path: Path, check_images: bool, warn, chosen: bool = False) -> None:
    """The warnings of a training recipe on one staged source: held-out splits (unless the splits were
    ``chosen`` with --splits), unchecked images."""
    counts: dict[str, int] = {}
    for s in read_columns(path, ["split"]).column("split").to_pylist():
        counts[s] = counts.get(s, 0) + 1
    held = {s: n for s, n in sorted(counts.items()) if HELD_OUT_SPLIT.search(s)}
    if held and not chosen:
        train = [s for s in counts if s not in held]
        warn(f"{src.label}: {sum(held.values())} faces of held-out split(s) "
             + ", ".join(f"{s} ({n})" for s, n in held.items()) + " go into this training set; choose the splits "
             f"with --splits {src.label}={','.join(train) if train else 'train'}")
    if not check_images:
        missing, total = _missing_images(path, src.root)
        if missing:
            warn(f"{src.label}: images not checked (no --check-images): {missing} of {total} faces name an image "
                 f"file that does not exist under {src.root}; they stay in the set (--check-images drops them)")


#: The recipes by name; ``build-manifest --recipe NAME`` runs ``RECIPES[NAME].build``.
RECIPES = {
    "wflw2": Recipe(
        "wflw2",
        "WFLW + LaPa closed-eye faces + 300W-LP, pose fitted where missing",
        ("wflw", "lapa", "300wlp"),
        "manifests/wflw2.parquet",
        {"wflw": 1.0, "lapa": 1.0, "300wlp": 1.0},
        ("build each source (--policy, --on-error, --check-images; --splits keeps the named splits)",
         "LaPa: keep the faces with either eye closed (EAR <= 0.10)",
         "fit head pose where the source has none (300W-LP keeps its own, the fit beside it)",
         "merge with the per-source --weight and duplicate detection; write OUT.balance.json/.md"),
        build_wflw2,
    ),
}

"""Reports on a manifest: the balance tables (faces per source, yaw bins, eye state, attributes) and
histograms of yaw, pitch, roll and eye aspect ratio per source, drawn with OpenCV, plus an HTML page.
"""
from __future__ import annotations

import html
import json
import os
from pathlib import Path

import numpy as np

from ..core.eyes import EYE_STATES
from ..io import write_png_atomic, write_text_atomic
from ..manifest import ATTRIBUTE_COLUMNS, POSE_SOURCES
from .colors import PALETTE, source_colour  # noqa: F401  (PALETTE re-exported)

YAW_BIN = 15.0
#: the pose_source values counted by the balance report (null counted as "unknown")
POSE_LABELS = (*POSE_SOURCES, "unknown")


# --- balance ----------------------------------------------------------------------------------------------

def yaw_bin_labels(width: float = YAW_BIN) -> list[str]:
    edges = np.arange(-90.0, 90.0 + width / 2, width)
    return ["< -90"] + [f"[{a:g}, {b:g})" for a, b in zip(edges[:-1], edges[1:])] + [">= 90", "unknown"]


def yaw_bins(yaw, width: float = YAW_BIN) -> np.ndarray:
    """Bin index into :func:`yaw_bin_labels` for each yaw (degrees; NaN -> 'unknown')."""
    y = np.asarray(yaw, dtype=np.float64)
    nb = int(round(180 / width))
    yc = np.clip(np.nan_to_num(y, nan=0.0), -91.0, 91.0)
    idx = np.floor((yc + 90.0) / width).astype(np.int64)
    idx = np.where(np.isnan(y), nb + 2, np.where(yc < -90, 0, np.where(yc >= 90, nb + 1, idx + 1)))
    return idx


def _counts(values, labels) -> dict[str, int]:
    """How often each label occurs in the pandas Series ``values``."""
    found = values.value_counts()
    return {lab: int(found.get(lab, 0)) for lab in labels}


def balance_report(df) -> dict:
    """Balance of a manifest DataFrame, per source: faces (per split), summed weight, yaw in 15-degree
    bins (the ``yaw`` column: the dataset's pose or the fit), pose source, eye state and the WFLW
    attribute flags (true / false / unknown). Sources named in the metadata's ``source_roots`` that have
    no faces are listed with zeros."""
    import pandas as pd

    out: dict = {"faces": int(len(df)), "sources": {}}
    labels = yaw_bin_labels()
    names = sorted(set(df["source"]) | set(df.attrs.get("manifest", {}).get("source_roots", {})))
    for source in names:  # sources of the metadata with no faces left are listed with zeros
        g = df[df["source"] == source]
        yaw = pd.to_numeric(g["yaw"], errors="coerce").to_numpy(np.float64)
        b = np.bincount(yaw_bins(yaw), minlength=len(labels))
        eye = g["eye_state"].astype(object).where(g["eye_state"].notna(), "unknown")
        pose_src = g["pose_source"].astype(object).where(g["pose_source"].notna(), "unknown")
        attrs = {}
        for col in ATTRIBUTE_COLUMNS:
            v = g[col]
            attrs[col[5:]] = {"true": int((v == True).sum()), "false": int((v == False).sum()),  # noqa: E712
                              "unknown": int(v.isna().sum())}
        out["sources"][str(source)] = {
            "faces": int(len(g)),
            "splits": {str(k): int(n) for k, n in g["split"].value_counts().sort_index().items()},
            "weight_sum": float(g["weight"].astype(np.float64).sum()),
            "weights": sorted({float(w) for w in g["weight"].astype(np.float64)}),
            "yaw_bins": {lab: int(n) for lab, n in zip(labels, b)},
            "pose_source": _counts(pose_src, POSE_LABELS),
            "eye_state": _counts(eye, EYE_STATES),
            "attributes": attrs,
        }
    return out


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def balance_markdown(rep: dict, title: str = "balance") -> str:
    """The balance report as Markdown tables."""
    src = rep["sources"]
    names = list(src)
    parts = [f"# {title}", "", f"{rep['faces']} faces.", "", "## Faces per source", ""]
    parts.append(_table(["source", "faces", "splits", "weights", "summed weight"],
                        [[s, src[s]["faces"], ", ".join(f"{k} {v}" for k, v in src[s]["splits"].items()),
                          ", ".join(f"{w:g}" for w in src[s]["weights"]), f"{src[s]['weight_sum']:g}"] for s in names]))
    labels = yaw_bin_labels()
    parts += ["", "## Yaw, 15-degree bins (dataset pose or fitted)", ""]
    parts.append(_table(["yaw"] + names, [[lab] + [src[s]["yaw_bins"][lab] for s in names] for lab in labels]))
    parts += ["", "## Pose source", ""]
    parts.append(_table(["pose source"] + names, [[k] + [src[s]["pose_source"][k] for s in names]
                                                  for k in POSE_LABELS]))
    parts += ["", "## Eye state", ""]
    parts.append(_table(["eye state"] + names, [[k] + [src[s]["eye_state"][k] for s in names] for k in EYE_STATES]))
    parts += ["", "## Attributes (true / false / unknown)", ""]
    attrs = [c[5:] for c in ATTRIBUTE_COLUMNS]
    parts.append(_table(["attribute"] + names, [[a] + ["{true} / {false} / {unknown}".format(**src[s]["attributes"][a])
                                                      for s in names] for a in attrs]))
    return "\n".join(parts) + "\n"


def write_balance(df, stem: str | os.PathLike, title: str = "balance") -> tuple[Path, Path, dict]:
    """Write ``STEM.balance.json`` and ``STEM.balance.md``; returns their paths and the report."""
    stem = Path(stem)
    rep = balance_report(df)
    base = stem.with_name(stem.name.removesuffix(".parquet"))
    js, md = base.with_name(base.name + ".balance.json"), base.with_name(base.name + ".balance.md")
    write_text_atomic(json.dumps(rep, indent=1, sort_keys=True) + "\n", js)
    write_text_atomic(balance_markdown(rep, title), md)
    return js, md, rep


# --- histograms (OpenCV) ---------------------------------------------------------------------------------

#: BGR colour of a histogram's marker line (the closed-eye threshold): black, which no source takes
MARKER_COLOUR = (0, 0, 0)
#: how a quantity is named in titles
DISPLAY_NAMES = {"yaw": "Yaw", "pitch": "Pitch", "roll": "Roll", "ear": "EAR"}
QUANTITIES = {
    # name: (columns, range, bin width, unit, what one value counts)
    "yaw": (("yaw",), (-100.0, 100.0), 5.0, "degrees", "faces"),
    "pitch": (("pitch",), (-100.0, 100.0), 5.0, "degrees", "faces"),
    "roll": (("roll",), (-100.0, 100.0), 5.0, "degrees", "faces"),
    "ear": (("ear_left", "ear_right"), (0.0, 0.6), 0.01, "eye aspect ratio, both eyes", "eyes"),
}


def _nice_ticks(lo: float, hi: float, n: int = 5) -> np.ndarray:
    span = max(hi - lo, 1e-12)
    raw = span / n
    mag = 10 ** np.floor(np.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=raw)
    return np.arange(np.ceil(lo / step) * step, hi + step / 2, step)


def panel_label(name: str, count: int, peak: int, counted: str = "faces") -> str:
    """A histogram panel's label: the source, how many values and what they count, the tallest bin."""
    if not count:
        return f"{name}  (no known value)"
    noun = counted if count != 1 else counted.removesuffix("s")  # 1 face, 2 eyes
    return f"{name}  ({count} {noun}, peak {peak})"


def draw_histograms(series: dict[str, np.ndarray], value_range: tuple[float, float], bin_width: float,
                    title: str, xlabel: str, marker: float | None = None, panel_size=(720, 170),
                    counted: str = "faces") -> np.ndarray:
    """One histogram panel per entry of ``series`` (label -> values; NaN ignored), stacked with a shared
    x axis, each in its source's colour (:func:`.colors.source_colour`). Values outside ``value_range`` are
    counted in the end bins; each panel's label says how many values it holds and what one value is
    (``counted``: ``"faces"``, or ``"eyes"`` for the EAR, two per face). Returns a BGR uint8 image."""
    import cv2

    w, ph = panel_size
    left, right, top, bottom = 64, 16, 34, 40
    names = list(series) or ["(no faces)"]
    h = top + ph * len(names) + bottom
    img = np.full((h, w, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(img, title, (left, 22), font, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    lo, hi = value_range
    edges = np.arange(lo, hi + bin_width / 2, bin_width)
    xs = lambda v: int(round(left + (v - lo) / (hi - lo) * (w - left - right)))  # noqa: E731
    for k, name in enumerate(names):
        y0 = top + k * ph
        y1 = y0 + ph - 18
        vals = np.asarray(series.get(name, []), dtype=np.float64)
        vals = np.clip(vals[np.isfinite(vals)], lo, hi - 1e-9)
        counts, _ = np.histogram(vals, bins=edges)
        peak = max(int(counts.max()) if counts.size else 0, 1)
        colour = source_colour(name)  # the same colour for a source in every report
        cv2.rectangle(img, (left, y0 + 14), (w - right, y1), (235, 235, 235), -1)
        for c, a, b in zip(counts, edges[:-1], edges[1:]):
            if c:
                top_px = int(round(y1 - c / peak * (y1 - y0 - 18)))
                cv2.rectangle(img, (xs(a), top_px), (max(xs(b) - 1, xs(a)), y1), colour, -1)
        if marker is not None:
            cv2.line(img, (xs(marker), y0 + 14), (xs(marker), y1), MARKER_COLOUR, 1, cv2.LINE_AA)
        label = panel_label(name, vals.size, peak, counted)
        cv2.putText(img, label, (left + 4, y0 + 12), font, 0.45, (40, 40, 40), 1, cv2.LINE_AA)
        if vals.size:
            cv2.putText(img, str(peak), (8, y0 + 28), font, 0.4, (80, 80, 80), 1, cv2.LINE_AA)
            cv2.putText(img, "0", (8, y1), font, 0.4, (80, 80, 80), 1, cv2.LINE_AA)
    axis_y = top + ph * len(names) - 18
    for t in _nice_ticks(lo, hi, 8):
        x = xs(t)
        cv2.line(img, (x, axis_y), (x, axis_y + 5), (0, 0, 0), 1)
        label = f"{t:g}"
        (tw, _), _ = cv2.getTextSize(label, font, 0.4, 1)
        cv2.putText(img, label, (x - tw // 2, axis_y + 18), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.line(img, (left, axis_y), (w - right, axis_y), (0, 0, 0), 1)
    cv2.putText(img, xlabel, (left, h - 6), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return img


def write_report(manifest_path: str | os.PathLike, out_dir: str | os.PathLike, closed: float | None = None,
                 where=None) -> Path:
    """Histograms of yaw, pitch, roll and EAR per source as PNG files in ``out_dir`` and an ``index.html``
    linking them with the balance tables. ``where``: a row filter (:mod:`landmark_unify.manifest.filters`)
    selecting the faces reported. Returns the HTML path."""
    import pandas as pd

    from ..core.eyes import CLOSED_THRESHOLD
    from ..manifest import read_manifest

    closed = CLOSED_THRESHOLD if closed is None else closed
    from ..manifest.filters import filter_rows

    df = filter_rows(read_manifest(manifest_path), where)
    out = Path(out_dir)
    sources = sorted(df["source"].unique()) if len(df) else []
    groups = {s: df[df["source"] == s] for s in sources}
    pngs = []
    for name, (cols, rng, width, unit, counted) in QUANTITIES.items():
        series = {s: np.concatenate([pd.to_numeric(g[c], errors="coerce").to_numpy(np.float64) for c in cols])
                  for s, g in groups.items()}
        shown = DISPLAY_NAMES.get(name, name)
        title = f"{shown} per source" + (" (closed-eye threshold: the black line)" if name == "ear" else "")
        img = draw_histograms(series, rng, width, title, f"{shown} ({unit}); values beyond the axis in the end bins",
                              marker=closed if name == "ear" else None, counted=counted)
        path = out / f"{name}.png"
        write_png_atomic(img, path)
        pngs.append(path)
    rep = balance_report(df)
    write_text_atomic(json.dumps(rep, indent=1, sort_keys=True) + "\n", out / "balance.json")
    md = balance_markdown(rep, Path(manifest_path).name)
    page = ["<!doctype html><html><head><meta charset='utf-8'>",
            f"<title>{html.escape(Path(manifest_path).name)}</title>",
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
            "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}img{display:block;margin:1em 0}</style>",
            "</head><body>",
            f"<h1>{html.escape(str(manifest_path))}</h1>",
            f"<p>{len(df)} faces from {len(sources)} sources. Angles in degrees, 300W-LP Pose_Para convention "
            f"(dataset pose where the source has one, else the landmark fit). EAR closed-eye threshold {closed:g}.</p>"]
    for p in pngs:
        shown = html.escape(DISPLAY_NAMES.get(p.stem, p.stem))
        page.append(f"<h2>{shown}</h2><a href='{p.name}'><img src='{p.name}' alt='{shown} histogram'></a>")
    page.append("<h2>Balance</h2>")
    page.append(_markdown_tables_to_html(md))
    page.append("<p><a href='balance.json'>balance.json</a></p></body></html>")
    index = out / "index.html"
    write_text_atomic("\n".join(page) + "\n", index)
    return index


def _markdown_tables_to_html(md: str) -> str:
    out, in_table = [], False
    for line in md.splitlines():
        if line.startswith("|") and set(line.replace("|", "").strip()) <= {"-"}:
            continue
        if line.startswith("|"):
            cells = [html.escape(c.strip()) for c in line.strip("|").split("|")]
            if not in_table:
                out.append("<table><tr>" + "".join(f"<th>{c}</th>" for c in cells) + "</tr>")
                in_table = True
            else:
                out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
            continue
        if in_table:
            out.append("</table>")
            in_table = False
        if line.startswith("## "):
            out.append(f"<h3>{html.escape(line[3:])}</h3>")
        elif line.startswith("# "):
            continue
        elif line.strip():
            out.append(f"<p>{html.escape(line)}</p>")
    if in_table:
        out.append("</table>")
    return "\n".join(out)


# --- duplicate pairs -----------------------------------------------------------------------------------------

#: Pairs shown on the duplicates page at most (leaks first, then by kind and distance).
PAGE_PAIRS = 200
#: Height of each face crop on the page, pixels.
PAGE_CROP = 128


def _face_crop(img, box, height: int = PAGE_CROP):
    """A square crop around ``box`` (1.4 times its larger side), resized to ``height`` pixels."""
    import cv2

    if img is None:
        out = np.full((height, height, 3), 200, np.uint8)
        cv2.putText(out, "no image", (8, height // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (60, 60, 60), 1, cv2.LINE_AA)
        return out
    b = np.asarray(box, np.float64)
    side = max(float(np.max(b[2:] - b[:2])) * 1.4, 8.0)
    cx, cy = (b[:2] + b[2:]) / 2
    s = height / side
    m = np.array([[s, 0, height / 2 - s * cx], [0, s, height / 2 - s * cy]])
    return cv2.warpAffine(img, m, (height, height), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(230, 230, 230))


def write_duplicates_page(pairs_path: str | os.PathLike, manifests, out_dir: str | os.PathLike,
                          limit: int = PAGE_PAIRS) -> Path:
    """``out_dir/index.html``: the pairs of a find-duplicates output side by side (one PNG per pair, the two
    faces cropped around their boxes), with kind, distance, leak, sources and splits. ``manifests``: the
    inputs of that run, in its order (``input_a`` / ``input_b`` index them). Leaks first, then exact, near,
    mirror and provenance pairs, closest first; at most ``limit`` pairs. Returns the HTML path."""
    import pyarrow.parquet as pq

    from ..images import ImageError, read_image
    from ..manifest import bbox_array, image_paths, read_manifest

    pairs = pq.read_table(pairs_path).to_pandas()
    order = {"exact": 0, "near": 1, "mirror": 2, "provenance": 3}
    pairs = pairs.assign(_leak=~pairs["leak"].astype(bool), _kind=pairs["kind"].map(order),
                         _d=pairs["distance"].fillna(99))
    shown = pairs.sort_values(["_leak", "_kind", "_d"], kind="stable").head(limit)
    frames = []
    for k, m in enumerate(manifests):
        df = read_manifest(m)
        wanted = set(shown.loc[shown["input_a"] == k, "sample_id_a"]) | set(
            shown.loc[shown["input_b"] == k, "sample_id_b"].dropna())
        sel = df[df["sample_id"].isin(wanted)]
        if len(sel):
            sub = sel.copy()
            sub.attrs = dict(df.attrs)
            frames.append(((k, sid), (p, b)) for sid, p, b in zip(sub["sample_id"], image_paths(sub), bbox_array(sub)))
    where = {key: val for f in frames for key, val in f}
    out = Path(out_dir)
    images: dict = {}

    def face(k, sid):
        p, box = where.get((int(k), sid), (None, None))
        if p is None:
            return _face_crop(None, None)
        if p not in images:
            try:
                images[p] = read_image(p, channel_order="bgr")
            except ImageError:
                images[p] = None
        return _face_crop(images[p], box)

    rows_html = []
    for n, r in enumerate(shown.itertuples(index=False)):
        left = face(r.input_a, r.sample_id_a)
        right = face(r.input_b, r.sample_id_b) if isinstance(r.sample_id_b, str) else _face_crop(None, None)
        gap = np.full((PAGE_CROP, 8, 3), 255, np.uint8)
        name = f"pair_{n:04d}.png"
        write_png_atomic(np.hstack([left, gap, right]), out / "pairs" / name)
        dist = "" if r.distance != r.distance or r.distance is None else str(int(r.distance))
        leak = "<b class='leak'>leak</b>" if r.leak else ""
        b_side = (html.escape(f"{r.source_b} / {r.split_b}") + "<br>" + html.escape(str(r.image_path_b)))
        rows_html.append(
            f"<tr><td><img src='pairs/{name}' width='{2 * PAGE_CROP + 8}' height='{PAGE_CROP}' "
            f"alt='pair {n}'></td><td>{html.escape(r.kind)}</td><td>{dist}</td><td>{leak}</td>"
            f"<td>{html.escape(f'{r.source_a} / {r.split_a}')}<br>{html.escape(str(r.image_path_a))}</td>"
            f"<td>{b_side}</td><td>{html.escape(str(r.provenance or ''))}</td></tr>")
    counts = pairs["kind"].value_counts()
    page = ["<!doctype html><html><head><meta charset='utf-8'>",
            f"<title>duplicates: {html.escape(Path(pairs_path).name)}</title>",
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top;text-align:left}.leak{color:#b00}</style>",
            "</head><body>", f"<h1>{html.escape(str(pairs_path))}</h1>",
            f"<p>{len(pairs)} pairs (" + ", ".join(f"{int(counts.get(k, 0))} {k}" for k in order)
            + f"), {int(pairs['leak'].sum())} leaks. Shown: {len(shown)}, leaks first, then by kind and distance "
            "(bits of 64). Left: face a, right: face b (grey: no image, or an origin outside the inputs).</p>",
            "<table><tr><th>faces</th><th>kind</th><th>distance</th><th>leak</th><th>a: source / split, image</th>"
            "<th>b: source / split, image</th><th>provenance</th></tr>", *rows_html, "</table></body></html>"]
    index = out / "index.html"
    write_text_atomic("\n".join(page) + "\n", index)
    return index

"""Pictures of an audit's top suspects: a PNG contact sheet and an HTML page, each face with its suspect
points ringed and its findings named, in order of suspicion (``landmark_unify audit --sheet/--html``)."""
from __future__ import annotations

import html
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.layouts import CANONICAL, get_layout
from ..io import write_png_atomic, write_text_atomic
from .render import contact_sheet, crop_box, render_face, to_tile

#: a point is ringed when its suspicion reaches this (the audit's point flag)
RING_Z = 4.0
RING_COLOUR = (0, 0, 255)  # BGR red


def suspect_rows(audit: pd.DataFrame, manifest: pd.DataFrame, n: int) -> pd.DataFrame:
    """The ``n`` most suspect faces (by rank) with their manifest rows joined on ``sample_id``."""
    top = audit.sort_values("rank").head(n)
    cols = ["sample_id", "landmarks", "valid", "bbox", "source", "image_path"]
    m = manifest[cols].drop_duplicates("sample_id")
    return top.drop(columns=[c for c in ("source", "image_path") if c in top]).merge(m, on="sample_id", how="left")


def caption(row) -> str:
    findings = ", ".join(row["findings"]) if len(row["findings"]) else "no finding"
    return f"#{row['rank']} suspicion {row['suspicion']:.1f}\n{findings}"


def suspect_tile(image, row, size: int = 192) -> np.ndarray:
    """One face: landmarks, its suspect points ringed in red, the rank, suspicion and findings on top."""
    import cv2

    pts, valid, bbox = np.asarray(row["landmarks"]), np.asarray(row["valid"], bool), np.asarray(row["bbox"])
    tile = render_face(image, pts, valid, bbox, size=size, caption=caption(row), radius=max(1, size // 128))
    x0, y0, side = crop_box(pts, valid, bbox)
    tp = to_tile(pts, x0, y0, side, size)
    z = np.asarray(row["point_suspicion"], np.float64)
    ring = valid & np.isfinite(z) & (z >= RING_Z) & np.isfinite(tp).all(1)
    for k in np.flatnonzero(ring):
        cv2.circle(tile, (int(round(tp[k, 0])), int(round(tp[k, 1]))), max(4, size // 28), RING_COLOUR, 1,
                   cv2.LINE_AA)
    return tile


def _images(rows: pd.DataFrame, roots: dict):
    """Each row's picture (BGR) through the project's image reader, None where missing or unreadable."""
    from ..images import ImageError, read_image
    from ..manifest import image_paths

    files = image_paths(rows, roots)
    cache = {}
    for f in files:
        if f not in cache:
            try:
                cache[f] = read_image(f, channel_order="bgr") if f is not None else None
            except ImageError:
                cache[f] = None
    return [cache[f] for f in files]


def write_suspects(audit: pd.DataFrame, manifest: pd.DataFrame, *, roots: dict, sheet: str | os.PathLike | None = None,
                   html_dir: str | os.PathLike | None = None, n: int = 36, size: int = 192) -> dict:
    """Draw the ``n`` top suspects: a contact sheet PNG at ``sheet`` and/or ``html_dir/index.html`` with one
    PNG per face (``faces/RANK.png``) and a table of the evidence. Returns the paths written."""
    rows = suspect_rows(audit, manifest, n)
    images = _images(rows, roots)
    tiles = [suspect_tile(img, row, size) for img, (_, row) in zip(images, rows.iterrows(), strict=True)]
    out = {}
    if sheet is not None:
        out["sheet"] = write_png_atomic(contact_sheet(tiles), sheet)
    if html_dir is not None:
        d = Path(html_dir)
        names = get_layout(CANONICAL).names
        page = ["<!doctype html><html><head><meta charset='utf-8'><title>audit: top suspects</title>",
                "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
                "td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}img{display:block}</style>",
                "</head><body><h1>Audit: top suspects, most suspect first</h1>",
                f"<p>{len(rows)} faces. Suspect points (suspicion &ge; {RING_Z:g}) are ringed in red; distances in "
                "inter-ocular distances (IOD).</p>",
                "<table><tr><th>rank</th><th>face</th><th>suspicion</th><th>findings</th><th>evidence</th></tr>"]
        for tile, (_, row) in zip(tiles, rows.iterrows(), strict=True):
            rel = f"faces/{int(row['rank']):06d}.png"
            write_png_atomic(tile, d / rel)
            z = np.asarray(row["point_suspicion"], np.float64)
            pts = [names[k] for k in np.argsort(-np.nan_to_num(z, nan=-1))[:5] if np.nan_to_num(z[k]) >= RING_Z]
            ev = [f"image {html.escape(str(row['image_path']))} ({html.escape(str(row['source']))})"]
            if pts:
                ev.append("suspect points: " + html.escape(", ".join(pts)))
            if pd.notna(row.get("worst_point_iod")):
                ev.append(f"worst point off by {row['worst_point_iod']:.3f} IOD")
            if isinstance(row.get("repair"), str):
                ev.append("explained by: " + html.escape(row["repair"]))
            if isinstance(row.get("part"), str) and pd.notna(row.get("part_shift_iod")):
                ev.append(f"part {html.escape(row['part'])}: shift {row['part_shift_iod']:.3f} IOD")
            if pd.notna(row.get("points_outside_box")) and row["points_outside_box"] > 0:
                ev.append(f"{100 * row['points_outside_box']:.0f} % of the points outside the box")
            for col, what in (("out_of_order", "out of left-right order"), ("collapsed_ends", "ends together inside")):
                parts = row.get(col)
                if isinstance(parts, (list, tuple, np.ndarray)) and len(parts):
                    ev.append(f"{what}: " + html.escape(", ".join(map(str, parts))))
            if isinstance(row.get("mirror_of"), str):
                ev.append("mirrored copy of " + html.escape(row["mirror_of"]))
            if pd.notna(row.get("pose_diff_deg")):
                ev.append(f"dataset pose vs fit: {row['pose_diff_deg']:.1f} deg")
            findings = ", ".join(row["findings"]) if len(row["findings"]) else "none"
            alt = html.escape(f"rank {int(row['rank'])}: {findings}")
            page.append(f"<tr><td>{int(row['rank'])}</td><td><img src='{rel}' alt='{alt}' width='{size}' "
                        f"height='{size}'></td><td>{row['suspicion']:.2f}</td><td>{html.escape(findings)}</td>"
                        f"<td>{'<br>'.join(ev)}</td></tr>")
        page.append("</table></body></html>")
        out["html"] = write_text_atomic("\n".join(page) + "\n", d / "index.html")
    return out

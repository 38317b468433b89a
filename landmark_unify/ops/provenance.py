"""Provenance: the derivations between datasets that pixels alone cannot show, as a table.

Each rule of :data:`DERIVATIONS` recognises the rows of one dataset by their ``image_path`` (a regular
expression on the path relative to the source root, optionally restricted to source schemas) and gives
each such row an *origin key*: the original photo it shows, named the same way by every dataset that holds
that photo (``300w/ibug/image_008_1``, ``aflw/image00050``). Rows of different sources that share an origin
key form ``provenance`` pairs. ``docs/spec/duplicates.md`` lists the table with its sources of fact.

:data:`KNOWN_TEST_SETS` names the origin keys that belong to a published test set: a row that *is* that
dataset's copy (``origin=True``) counts as test data whatever its split is called, and a derived row (a
300W-LP rendering) whose origin is in a test set pairs with that origin even when the origin is not among
the inputs (``image_path_b`` then names the origin, ``sample_id_b`` is null).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: A split whose name says it is test data.
TEST_SPLIT = re.compile(r"test", re.IGNORECASE)


@dataclass(frozen=True)
class Derivation:
    """One row of the provenance table.

    name: the rule; dataset: the dataset whose rows it recognises; pattern: a regular expression searched in
    ``image_path`` whose named groups fill ``key`` (a ``str.format`` template; the key is lower-cased);
    schemas: the ``source_schema`` values the row must have (empty: any); origin: the row is the original
    dataset's own copy of the photo (else a derivation of it); test_set: every row of this dataset is test
    data (a published test set); fact: where the fact comes from."""

    name: str
    dataset: str
    pattern: str
    key: str
    schemas: tuple[str, ...] = ()
    origin: bool = False
    test_set: str | None = None
    fact: str = ""


#: The table, first match wins (300W-LP's upper-case file names before 300W's lower-case folders).
DERIVATIONS: tuple[Derivation, ...] = (
    Derivation("300w-lp-lfpw", "300W-LP",
               r"(?:^|/)LFPW_image_(?P<split>train|test)_(?P<num>\d+)_\d+\.\w+$", "300w/lfpw/{split}/image_{num}",
               fact="300W-LP renders 300W's LFPW images; the file name keeps the LFPW split and number and adds "
                    "the rendering's index (LFPW_image_test_0001_0 <- lfpw/testset/image_0001)"),
    Derivation("300w-lp", "300W-LP",
               r"(?:^|/)(?P<subset>AFW|HELEN|IBUG)_(?P<stem>[^/]+)_\d+\.\w+$", "300w/{subset}/{stem}",
               fact="300W-LP renders 300W's AFW, HELEN and iBUG images; the file name is the subset, the 300W file "
                    "name and the rendering's index (IBUG_image_008_1_0 <- ibug/image_008_1); the _Flip folders "
                    "hold the same names mirrored"),
    Derivation("300w-lfpw", "300W", r"(?:^|/)lfpw/(?P<split>train|test)set/(?P<stem>image_\d+)\.\w+$",
               "300w/lfpw/{split}/{stem}", origin=True,
               fact="300W's LFPW: lfpw/trainset and lfpw/testset, image_NNNN (the two sets reuse numbers)"),
    Derivation("300w", "300W", r"(?:^|/)(?P<subset>afw|helen|ibug)/(?:(?:train|test)set/)?(?P<stem>[^/]+)\.\w+$",
               "300w/{subset}/{stem}", origin=True,
               fact="300W's afw, helen/{trainset,testset} and ibug folders"),
    Derivation("300w-private", "300W", r"(?:^|/)0[12]_(?:Indoor|Outdoor)/(?P<stem>(?:indoor|outdoor)_\d+)\.\w+$",
               "300w/private/{stem}", origin=True,
               fact="the 300-W challenge's own test set (01_Indoor, 02_Outdoor)"),
    Derivation("aflw2000-3d", "AFLW2000-3D", r"(?:^|/)image(?P<num>\d{5})\.\w+$", "aflw/image{num}",
               schemas=("ibug68_3d", "aflw21"), test_set="AFLW2000-3D",
               fact="AFLW2000-3D re-renders the first 2000 images of AFLW (450x450) and keeps AFLW's imageNNNNN "
                    "numbering; it is a test set (pose, 68-point landmarks)"),
    Derivation("aflw", "AFLW", r"(?:^|/)image(?P<num>\d{5})\.\w+$", "aflw/image{num}", schemas=("aflw19",),
               origin=True, fact="AFLW's own imageNNNNN numbering (MMPose's AFLW-19 files)"),
    Derivation("wflw", "WFLW", r"(?:^|/)\d+--[^/]+/(?P<stem>\d+_[^/]+)\.jpg$", "wider/{stem}",
               fact="WFLW's images are WIDER FACE images under their event folders (N--Event/N_Event_..._M.jpg)"),
)

#: Origin keys of published test sets: (prefix of the key, dataset, name of the test set).
KNOWN_TEST_SETS: tuple[tuple[str, str, str], ...] = (
    ("300w/ibug/", "300W", "300-W challenging test set (iBUG)"),
    ("300w/lfpw/test/", "300W", "300-W common test set (LFPW test)"),
    ("300w/private/", "300W", "300-W private test set (indoor, outdoor)"),
)

#: Derivations the table cannot key, documented for the user (pixels must show them: ``near``/``mirror``).
UNKEYED = (
    ("COFW", "LFPW", "COFW's 1,345 training faces include 845 LFPW faces; COFW numbers its images (001766.jpg) and "
                     "keeps no LFPW name, so only the aligned-face hashes can pair them"),
    ("300W-LP", "300W (HELEN)", "a HELEN rendering names the HELEN photo but not whether it is in 300W's HELEN "
                                "trainset or testset: it pairs with a 300W row of that photo when one is loaded"),
)

_COMPILED = [(d, re.compile(d.pattern)) for d in DERIVATIONS]


def known_test_set(key: str | None) -> tuple[str, str] | None:
    """``(dataset, test set)`` of the published test set an origin key belongs to, or None."""
    if not key:
        return None
    return next(((ds, name) for prefix, ds, name in KNOWN_TEST_SETS if key.startswith(prefix)), None)


def classify(image_path: pd.Series, source_schema: pd.Series) -> pd.DataFrame:
    """Per row: ``rule`` (index into :data:`DERIVATIONS`, -1 where none matches), ``key`` (origin key or
    None). One regular-expression pass per rule over the unique (path, schema) pairs."""
    paths = image_path.astype(object).where(image_path.notna(), "").astype(str).to_numpy()
    schemas = source_schema.astype(object).where(source_schema.notna(), "").astype(str).to_numpy()
    uniq, inv = np.unique(np.stack([paths, schemas], 1).astype(str), axis=0, return_inverse=True)
    rule = np.full(len(uniq), -1)
    key = np.full(len(uniq), None, dtype=object)
    for r, (d, rx) in enumerate(_COMPILED):
        for u in np.flatnonzero(rule < 0):
            if d.schemas and uniq[u, 1] not in d.schemas:
                continue
            m = rx.search(uniq[u, 0])
            if m:
                rule[u] = r
                key[u] = d.key.format(**m.groupdict()).lower()
    inv = np.asarray(inv).reshape(-1)
    return pd.DataFrame({"rule": rule[inv], "key": pd.Series(key[inv], dtype=object)})


def test_side(split: pd.Series, rules: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Per row, whether it is test data: its split's name says test, or the row is a copy of a published test
    set (a rule's ``test_set``, or an origin row whose key is in :data:`KNOWN_TEST_SETS`)."""
    by_split = split.astype(object).where(split.notna(), "").astype(str).str.contains(TEST_SPLIT).to_numpy()
    member = np.zeros(len(rules), bool)
    for r, d in enumerate(DERIVATIONS):
        sel = rules == r
        if not sel.any():
            continue
        if d.test_set:
            member[sel] = True
        elif d.origin:
            member[sel] = [known_test_set(k) is not None for k in keys[sel]]
    return by_split | member


def provenance_pairs(sources: np.ndarray, rules: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of rows (``i < j``) from different sources that share an origin key, and the derived rows whose
    origin is a known test set that no origin row among them holds. Returns ``(i, j, external)``: the pairs,
    and the row indices of the external pairs."""
    has = np.flatnonzero(rules >= 0)
    if not has.size:
        e = np.zeros(0, np.int64)
        return e, e.copy(), e.copy()
    frame = pd.DataFrame({"row": has, "key": keys[has], "source": sources[has], "rule": rules[has]})
    origin_rules = [r for r, d in enumerate(DERIVATIONS) if d.origin]
    frame["origin"] = frame["rule"].isin(origin_rules)
    pi, pj = [], []
    for _, g in frame.groupby("key", sort=False):
        if len(g) < 2 or g["source"].nunique() < 2:
            continue
        rows = g["row"].to_numpy()
        src = g["source"].to_numpy()
        a, b = np.triu_indices(len(rows), 1)
        cross = src[a] != src[b]
        pi.append(rows[a[cross]])
        pj.append(rows[b[cross]])
    i = np.concatenate(pi) if pi else np.zeros(0, np.int64)
    j = np.concatenate(pj) if pj else np.zeros(0, np.int64)
    held = set(frame.loc[frame["origin"], "key"])
    derived = frame[~frame["origin"]]
    ext = derived["row"].to_numpy()[[(k not in held and known_test_set(k) is not None) for k in derived["key"]]]
    return i.astype(np.int64), j.astype(np.int64), np.sort(ext).astype(np.int64)

"""Metadata detected from a source: keys the catalog declares first, then the data's shape.

* primary keys: the catalog's, else a unique non-null column named ``id``/``<table>_id``;
* foreign keys: the catalog's, else a column named like another table's primary key (or
  ``<parent>_id``) whose values are contained in that key;
* sdtypes: dates, booleans, numbers, identity text by name hints and value shape (emails,
  phones, names, addresses), ids for high-cardinality codes, categories otherwise;
* a column named ``name`` is a person's name only if its values look like one (two to four
  words, the first a given name Faker knows in most rows): Chinook's genres, playlists,
  artists and tracks have a ``Name`` too. A label every row of a small table holds once (a
  genre, a media type) is a category; many-valued short text in words (titles) is free
  text, not a code;
* columns of binary or nested values are left out (logged): nothing can model them.
"""

from __future__ import annotations

import importlib
import logging
import re
from functools import lru_cache
from itertools import combinations
from pathlib import Path

import pandas as pd

from synth_pipeline.schema.metadata import BINARY_SDTYPE, LOOKUP_MAX_ROWS, Metadata
from synth_pipeline.schema.plan import prepare_metadata
from synth_pipeline.sources.loaders import CatalogKeys, catalog_keys, load_tables, release_arrow_memory
from synth_pipeline.sources.validate import MAX_CATEGORIES, unsupported_kind
from synth_pipeline.stats import distinct_count, text_hashes

log = logging.getLogger(__name__)
DISTINCT_PROBE_ROWS = 100_000  # a text column's distinct values are counted on these first

NAME_HINTS = [  # (regex on the lowercased column name, sdtype)
    (r"(^|_)e?mail", "email"), (r"phone|mobile|contact$|fax", "phone_number"),
    (r"^first_?name$", "first_name"), (r"^last_?name$|surname", "last_name"),
    (r"(^|_)(full_?)?name$", "name"), (r"address_?(line)?_?1?$|^street", "street_address"),
    (r"address_?(line)?_?2$", "secondary_address"), (r"(^|_)city$", "city"),
    (r"postal|zip|postcode", "postcode"), (r"plate|vehicle_?(number|no)", "license_plate"),
]
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$", re.I)
PHONE_RE = re.compile(r"^\+?[0-9 ()\-.]{7,}$")
YEAR_RANGE_RE = re.compile(r"^(1[89]|2[0-9])[0-9]{2} ?[-/] ?([0-9]{2}|(1[89]|2[0-9])[0-9]{2})$")  # 2023-2024
DATE_NAME_RE = re.compile(r"date|time|_at$|_on$|^dob$|birth", re.I)
PERSON_NAME_MIN_SHARE = 0.5  # of the values: two to four words, the first a known given name
NAME_LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "pt_BR", "nl_NL")


@lru_cache(maxsize=1)
def _given_names() -> frozenset[str]:
    names: set[str] = set()
    for locale in NAME_LOCALES:
        provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        for attr in ("first_names", "first_names_male", "first_names_female"):
            names |= set(getattr(provider, attr, ()) or ())
    return frozenset(names)


def looks_like_person_names(text: pd.Series) -> bool:
    """Most values two to four words, the first a given name (Anna Schmidt, not Rock or AC/DC)."""
    words = text.head(500).str.split()
    if not len(words):
        return False
    person = words.str.len().between(2, 4) & words.str[0].isin(_given_names())
    return bool(person.mean() >= PERSON_NAME_MIN_SHARE)


def detect_metadata(source: str | Path) -> Metadata:
    frames = load_tables(source)
    try:
        return detect_from_frames(frames, catalog_keys(source))
    finally:
        del frames
        release_arrow_memory()  # the tables' memory back to the system, not kept by Arrow for the run


def resolve_metadata(metadata: Metadata, source: str | Path) -> Metadata:
    """A given metadata with what only the data tells (empty tables, binary columns, a
    cycle's deferred edge), each change logged as a warning."""
    frames = load_tables(source, list(metadata.tables))
    resolved, notes = prepare_metadata(metadata, frames)
    for note in notes:
        log.warning("%s", note)
    return resolved


def detect_from_frames(frames: dict[str, pd.DataFrame], catalog: CatalogKeys | None = None) -> Metadata:
    """Metadata for ``frames``: keys the catalog declares, else the ones the data shows.
    Never refuses a readable database: what it cannot decide is logged (one warning each)."""
    catalog = catalog or CatalogKeys()
    binary = {t: {c for c in f.columns if unsupported_kind(f[c])} for t, f in frames.items()}
    pks = {t: catalog.primary_keys.get(t) or _guess_primary_key(t, f, binary[t], list(frames))
           for t, f in frames.items()}
    if catalog.foreign_keys:
        fks = [(c, tuple(cc), p, tuple(pc)) for c, cc, p, pc in catalog.foreign_keys]
    else:
        fks = _guess_foreign_keys(frames, pks, binary)
    for t, f in frames.items():  # a composite key may be made of the foreign keys just found
        if not pks[t]:
            pks[t] = _guess_composite_key(t, f, {c for child, cols, _, _ in fks if child == t for c in cols}, binary[t])
    if not catalog.foreign_keys:
        fks += _guess_composite_foreign_keys(frames, pks, fks)
        fks = _without_subsumed(fks)
    for t in frames:
        if not pks[t] and len(frames[t]):
            log.warning("table '%s': no primary key declared or found: synthesized as a key-less table", t)
    key_columns = {t: set(pks[t] or []) for t in frames}
    for child, cols, _, _ in fks:
        key_columns[child].update(cols)
    tables = {}
    for name, frame in frames.items():
        columns = {}
        for c in frame.columns:
            if c in binary[name]:
                log.warning("table '%s': column '%s' holds %s values: left out of modelling, NULL in the output",
                            name, c, unsupported_kind(frame[c]))
                columns[c] = {"sdtype": BINARY_SDTYPE}
                continue
            columns[c] = _column_spec(c, frame[c], c in key_columns[name])
        spec: dict = {"columns": columns}
        if pks[name]:
            spec["primary_key"] = pks[name][0] if len(pks[name]) == 1 else list(pks[name])
        tables[name] = spec
    relationships = [{"parent_table_name": p, "parent_primary_key": list(pk) if len(pk) > 1 else pk[0],
                      "child_table_name": c, "child_foreign_key": list(fk) if len(fk) > 1 else fk[0]}
                     for c, fk, p, pk in fks]
    metadata = Metadata.from_dict({"tables": tables, "relationships": relationships})
    metadata, notes = prepare_metadata(metadata, frames)
    for note in notes:
        log.warning("%s", note)
    return metadata


# ------------------------------------------------------------------ names
def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _singular(word: str) -> str:
    word = word.lower()
    for plural, single in (("ies", "y"), ("sses", "ss"), ("xes", "x"), ("ches", "ch"), ("shes", "sh")):
        if word.endswith(plural):
            return word[: -len(plural)] + single
    return word[:-1] if word.endswith("s") and not word.endswith("ss") else word


def _unprefixed(name: str) -> str:
    """``l_orderkey`` -> ``orderkey``: a short table prefix before an underscore dropped."""
    match = re.match(r"^[A-Za-z]{1,3}_(.+)$", name)
    return _norm(match.group(1)) if match else _norm(name)


KEY_SUFFIXES = ("id", "key", "code", "no", "num", "number", "nr", "ref")


def _key_named(name: str) -> bool:
    norm = _norm(name)
    return any(norm.endswith(s) for s in KEY_SUFFIXES)


def _affinity(child_col: str, parent: str, parent_key: str, self_reference: bool) -> int:
    """How strongly the names say ``child_col`` refers to ``parent.parent_key`` (0: not at all)."""
    col, key = _norm(child_col), _norm(parent_key)
    table, single = _norm(parent), _norm(_singular(parent))
    table_forms = {table, single}
    if not self_reference and col == key and key not in ("id", "key", "code"):
        return 5  # customer_id -> customers.customer_id
    if any(col == f + s for f in table_forms for s in ("id", "key", "code", "no")):
        return 4  # CustomerId -> Customer.Id, teacher_id -> teachers.id
    if _unprefixed(child_col) == _unprefixed(parent_key) and _unprefixed(parent_key) != key or (
            not self_reference and _unprefixed(child_col) == key and len(key) > 3):
        return 4  # l_orderkey -> orders.o_orderkey
    if len(key) > 3 and key not in ("id", "key") and col.endswith(key) and col != key:
        return 3  # homeroom_teacher_id -> teachers.teacher_id
    if any(col.endswith(f + s) for f in table_forms for s in ("id", "key")) and len(single) > 2:
        return 3  # manager_staff_id -> staff.id
    return 0


# ------------------------------------------------------------------ keys
def _key_like(values: pd.Series) -> bool:
    """Whole numbers or short codes: what a key is written in (not measures, dates, free text)."""
    present = values.dropna()
    if not len(present) or pd.api.types.is_bool_dtype(values) or pd.api.types.is_datetime64_any_dtype(values):
        return False
    if pd.api.types.is_numeric_dtype(values):
        return bool((present == present.round()).all())
    if values.dtype != object and not pd.api.types.is_string_dtype(values):
        return False
    text = present.head(1000).astype(str)
    return bool(text.str.len().mean() <= 40 and (text.str.count(" ") <= 1).mean() > 0.9)


def _guess_primary_key(table: str, frame: pd.DataFrame, skip: set[str], tables: list[str]) -> list[str] | None:
    """A unique, non-null, key-like column: named like the table's key first, then any
    key-named column not named after another table (``film_id`` in ``film_category`` refers
    to ``film``), then the first column."""
    singular = _norm(_singular(table))
    wanted = ["id", f"{_norm(table)}id", f"{singular}id", f"{_norm(table)}key", f"{singular}key"]
    by_norm = {}
    for c in frame.columns:
        by_norm.setdefault(_norm(c), c)
    ordered = [by_norm[c] for c in wanted if c in by_norm]
    ordered += [c for c in frame.columns if _unprefixed(c) in ("id", f"{singular}id", f"{singular}key")
                and c not in ordered]
    others = [t for t in tables if t != table]
    ordered += [c for c in frame.columns if _key_named(c) and c not in ordered and not _names_other(c, others)]
    first = frame.columns[0] if len(frame.columns) else None
    if first is not None and first not in ordered and not _names_other(first, others):
        ordered.append(first)
    for col in ordered:
        if col in skip:
            continue
        values = frame[col]
        if len(values) and values.notna().all() and values.is_unique and _key_like(values):
            if col == frame.columns[0] or _key_named(col) or len(values) <= 1 or \
                    not pd.api.types.is_float_dtype(values):
                return [col]
    return None


def _names_other(column: str, tables: list[str]) -> bool:
    """Whether ``column`` is named after one of ``tables`` (``film_id`` after ``film``)."""
    return any(_affinity(column, t, "", False) >= 3 for t in tables)


COMPOSITE_MAX = 3
COMPOSITE_CANDIDATES = 8


def _guess_composite_key(table: str, frame: pd.DataFrame, fk_columns: set[str], skip: set[str]) -> list[str] | None:
    """The smallest unique, non-null combination (up to three) of key-like columns: the
    table's foreign keys first, then key-named columns (an order line's ``line_no``)."""
    if len(frame) < 2:
        return None
    candidates = [c for c in frame.columns if c in fk_columns and c not in skip]
    candidates += [c for c in frame.columns if c not in candidates and c not in skip and
                   (_key_named(c) or re.search(r"line|seq", c, re.I)) and _key_like(frame[c])]
    candidates = [c for c in candidates if frame[c].notna().all()][:COMPOSITE_CANDIDATES]
    sample = frame.sample(min(len(frame), 20_000), random_state=0) if len(frame) > 20_000 else frame
    for size in range(2, COMPOSITE_MAX + 1):
        for combo in combinations(candidates, size):
            if not sample.duplicated(list(combo)).any() and not frame.duplicated(list(combo)).any():
                return list(combo)
    return None


ORPHAN_SHARE = 0.05  # of a candidate foreign key's distinct values that may name no parent row


def _compatible(a: pd.Series, b: pd.Series) -> bool:
    numeric = pd.api.types.is_numeric_dtype
    return (numeric(a) and numeric(b)) or (not numeric(a) and not numeric(b))


def _containment(values: pd.Series, keys: pd.Series) -> float:
    distinct = values.dropna().drop_duplicates()
    if not len(distinct):
        return 0.0
    if pd.api.types.is_numeric_dtype(distinct) and pd.api.types.is_numeric_dtype(keys):
        return float(distinct.astype(float).isin(keys.dropna().astype(float)).mean())
    return float(distinct.astype(str).isin(keys.dropna().astype(str)).mean())


def _guess_foreign_keys(frames: dict[str, pd.DataFrame], pks: dict[str, list[str] | None],
                        binary: dict[str, set[str]]) -> list[tuple]:
    """Inclusion dependencies into a single-column key, kept where the names agree (see
    ``_affinity``); the best-named parent per column. A self-reference may be unnamed: a
    nullable whole-number column whose values are all keys of its own table (``ReportsTo``)."""
    out = []
    for child, frame in frames.items():
        for col in frame.columns:
            all_null = frame[col].notna().sum() == 0
            if col in binary[child] or not (all_null or _key_like(frame[col])):
                continue
            best = None
            for parent, pk in pks.items():
                if not pk or len(pk) != 1 or (parent == child and col == pk[0]):
                    continue
                key = frames[parent][pk[0]]
                if not frame[col].isna().all() and not _compatible(frame[col], key):
                    continue
                self_ref = parent == child
                score = _affinity(col, parent, pk[0], self_ref)
                if score == 0 and self_ref and frame[col].isna().any() and pd.api.types.is_numeric_dtype(frame[col]) \
                        and not _key_named(col) and _containment(frame[col], key) == 1.0:
                    score = 1
                if score == 0 or (pks[child] == [col] and (score < 5 or _names_other(col, [child]))):
                    continue
                if frame[col].isna().all():  # never set: only a clear name makes it a foreign key
                    if score >= 3 and (best is None or (score, 0.0, 0) > best[0]):
                        best = ((score, 0.0, 0), parent, pk[0], 1.0)
                    continue
                share = _containment(frame[col], key)
                if share < 1 - ORPHAN_SHARE:
                    continue
                rank = (score, share, -len(frames[parent]))
                if best is None or rank > best[0]:
                    best = (rank, parent, pk[0], share)
            if best is not None:
                _, parent, pk_col, share = best
                if share < 1:
                    log.warning("table '%s': %s refers to %s.%s, but %.1f%% of its values name no row there",
                                child, col, parent, pk_col, 100 * (1 - share))
                out.append((child, (col,), parent, (pk_col,)))
    return out + _unnamed_references(frames, pks, out, binary)


def _unnamed_references(frames, pks, found, binary) -> list[tuple]:
    """A key-named column no table's name matches (``SupportRepId``) whose values are all keys
    of exactly one root table that nothing else refers to (people referred to by a role): a
    foreign key into it, reported as a guess."""
    referenced = {p for c, _, p, _ in found if c != p} | {c for c, _, p, _ in found if c != p}
    linked = {(c, cols[0]) for c, cols, _, _ in found}
    out = []
    for child, frame in frames.items():
        for col in frame.columns:
            if (child, col) in linked or col in binary[child] or pks[child] and col in pks[child] \
                    or not _key_named(col) or not _key_like(frame[col]) or not frame[col].notna().any() \
                    or any(_affinity(col, t, pks[t][0], t == child) for t in frames if pks[t]):
                continue
            fits = [p for p, pk in pks.items() if pk and len(pk) == 1 and p != child and p not in referenced
                    and _compatible(frame[col], frames[p][pk[0]]) and _containment(frame[col], frames[p][pk[0]]) == 1.0]
            if len(fits) == 1:
                parent = fits[0]
                log.warning("table '%s': %s taken to refer to %s.%s by its values alone (check it)", child, col,
                            parent, pks[parent][0])
                out.append((child, (col,), parent, (pks[parent][0],)))
    return out


def _guess_composite_foreign_keys(frames, pks, fks) -> list[tuple]:
    """References to a composite key: child columns named like each key column (``l_partkey``
    for ``ps_partkey``) whose value combinations are contained in the key's."""
    out = []
    for parent, pk in pks.items():
        if not pk or len(pk) < 2:
            continue
        keys = None  # the parent's key combinations, hashed once a child names every key column
        for child, frame in frames.items():
            if child == parent:
                continue
            match = []
            for key_col in pk:
                found = [c for c in frame.columns if _norm(c) == _norm(key_col) or _unprefixed(c) == _unprefixed(key_col)]
                if len(found) != 1:
                    break
                match.append(found[0])
            if len(match) != len(pk) or len(set(match)) != len(match):
                continue
            values = frame[match].dropna()
            if not len(values) or any(not _compatible(frame[c], frames[parent][k]) for c, k in zip(match, pk)):
                continue
            if keys is None:
                keys = _combination_hashes(frames[parent], list(pk))
            combos = _combination_hashes(values, match).drop_duplicates()
            if combos.isin(keys).mean() >= 1 - ORPHAN_SHARE:
                out.append((child, tuple(match), parent, tuple(pk)))
    return out


def _combination_hashes(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """A 64-bit hash of each row's values in ``columns``, compared as text (a key held as
    numbers in one table and as text in another still matches), without a string per row."""
    return pd.Series(text_hashes(frame, lambda rows: pd.DataFrame(
        {i: rows[c].astype(str).to_numpy() for i, c in enumerate(columns)})))


def _without_subsumed(fks: list[tuple]) -> list[tuple]:
    """A single-column foreign key on a column of a composite one is implied by it
    (``l_partkey`` reaches ``part`` through ``partsupp``): left out."""
    composite = {(child, c) for child, cols, _, _ in fks if len(cols) > 1 for c in cols}
    return [fk for fk in fks if len(fk[1]) > 1 or (fk[0], fk[1][0]) not in composite]


def _column_spec(name: str, values: pd.Series, is_key: bool) -> dict:
    if is_key:
        return {"sdtype": "id"}
    present = values.dropna()
    if pd.api.types.is_bool_dtype(values):
        return {"sdtype": "boolean"}
    if pd.api.types.is_datetime64_any_dtype(values):
        has_time = bool(len(present)) and bool((present != present.dt.normalize()).any())
        return {"sdtype": "datetime", "datetime_format": "%Y-%m-%d %H:%M:%S" if has_time else "%Y-%m-%d"}
    if pd.api.types.is_numeric_dtype(values):
        integer = bool(len(present)) and bool((present == present.round()).all())
        return {"sdtype": "numerical", "computer_representation": "Int64" if integer else "Float"}
    # text kept in Arrow is read as it is (a Python string per value took 1.9 GB for 6M comments)
    text = present if isinstance(present.dtype, pd.StringDtype) else present.astype(str)
    if len(text) and DATE_NAME_RE.search(name) and pd.to_datetime(text, errors="coerce").notna().mean() > 0.95:
        parsed = pd.to_datetime(text, errors="coerce")
        has_time = bool((parsed.dropna() != parsed.dropna().dt.normalize()).any())
        return {"sdtype": "datetime", "datetime_format": "%Y-%m-%d %H:%M:%S" if has_time else "%Y-%m-%d"}
    lowered = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()  # BillingCity -> billing_city
    for pattern, sdtype in NAME_HINTS:
        if re.search(pattern, lowered) and (sdtype != "name" or looks_like_person_names(text)):
            return {"sdtype": sdtype, "pii": True}
    sample = text.head(500)
    if len(sample) and sample.str.match(EMAIL_RE).mean() > 0.9:
        return {"sdtype": "email", "pii": True}
    if len(sample) and sample.str.match(PHONE_RE).mean() > 0.9 and sample.str.count(r"[0-9]").min() >= 7 \
            and sample.nunique() > 0.5 * len(sample) and not sample.str.match(YEAR_RANGE_RE).any():
        return {"sdtype": "phone_number", "pii": True}
    # counted on the first rows first: past MAX_CATEGORIES there, every test below reads only
    # that (a whole count of TPC-H's 6 M comments took seconds)
    distinct = distinct_count(text.iloc[:DISTINCT_PROBE_ROWS])
    if len(text) > DISTINCT_PROBE_ROWS and distinct <= MAX_CATEGORIES:
        distinct = distinct_count(text)
    if len(values) <= LOOKUP_MAX_ROWS and distinct == len(text):
        return {"sdtype": "categorical"}  # a genre, a media type: the rows are the categories
    if len(text) >= 20 and (distinct > 0.5 * len(text) or distinct > MAX_CATEGORIES):
        long_text = text.str.len().mean() > 30 or text.str.count(" ").mean() >= 3
        in_words = text.head(500).str.contains(r"[^\W\d_]{2,} [^\W\d_]", regex=True).mean() >= 0.3
        if long_text or in_words:
            return {"sdtype": "text"}
        codes = text.str.contains(r"\d").mean() < 0.1 and distinct < 0.9 * len(text) and distinct <= MAX_CATEGORIES
        return {"sdtype": "categorical"} if codes else {"sdtype": "id"}  # states (SP, QC, NSW) repeat; keys do not
    return {"sdtype": "categorical"}

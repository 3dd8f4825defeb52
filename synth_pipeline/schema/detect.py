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
from pathlib import Path

import pandas as pd

from synth_pipeline.schema.metadata import LOOKUP_MAX_ROWS, Metadata
from synth_pipeline.sources.loaders import CatalogKeys, catalog_keys, load_tables
from synth_pipeline.sources.validate import MAX_CATEGORIES, unsupported_kind

log = logging.getLogger(__name__)

NAME_HINTS = [  # (regex on the lowercased column name, sdtype)
    (r"(^|_)e?mail", "email"), (r"phone|mobile|contact$|fax", "phone_number"),
    (r"^first_?name$", "first_name"), (r"^last_?name$|surname", "last_name"),
    (r"(^|_)(full_?)?name$", "name"), (r"address_?(line)?_?1?$|^street", "street_address"),
    (r"address_?(line)?_?2$", "secondary_address"), (r"(^|_)city$", "city"),
    (r"postal|zip|postcode", "postcode"), (r"plate|vehicle_?(number|no)", "license_plate"),
]
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$", re.I)
PHONE_RE = re.compile(r"^\+?[0-9 ()\-.]{7,}$")
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
    return detect_from_frames(frames, catalog_keys(source))


def detect_from_frames(frames: dict[str, pd.DataFrame], catalog: CatalogKeys | None = None) -> Metadata:
    catalog = catalog or CatalogKeys()
    pks = {t: catalog.primary_keys.get(t) or _guess_primary_key(t, f) for t, f in frames.items()}
    fks = list(catalog.foreign_keys) or _guess_foreign_keys(frames, pks)
    key_columns = {t: set(pks[t] or []) for t in frames}
    for child, col, _, _ in fks:
        key_columns[child].add(col)
    tables = {}
    for name, frame in frames.items():
        columns = {}
        for c in frame.columns:
            kind = unsupported_kind(frame[c])
            if kind and c not in key_columns[name]:
                log.warning("table '%s': column '%s' holds %s values and is left out of the metadata", name, c, kind)
                continue
            columns[c] = _column_spec(c, frame[c], c in key_columns[name])
        spec: dict = {"columns": columns}
        if pks[name]:
            spec["primary_key"] = pks[name][0] if len(pks[name]) == 1 else list(pks[name])
        tables[name] = spec
    relationships = [{"parent_table_name": p, "parent_primary_key": pk, "child_table_name": c, "child_foreign_key": fk}
                     for c, fk, p, pk in fks]
    return Metadata.from_dict({"tables": tables, "relationships": relationships})


def _guess_primary_key(table: str, frame: pd.DataFrame) -> list[str] | None:
    singular = table.lower().rstrip("s")
    candidates = ["id", f"{table.lower()}_id", f"{singular}_id", f"{table.lower()}id", f"{singular}id"]
    by_lower = {c.lower(): c for c in frame.columns}
    ordered = [by_lower[c] for c in candidates if c in by_lower]
    ordered += [c for c in frame.columns if c.lower().endswith("id") and c not in ordered]
    ordered += [frame.columns[0]] if frame.columns[0] not in ordered else []  # e.g. a code in column one
    for col in ordered:
        values = frame[col]
        if len(values) and values.notna().all() and values.is_unique:
            return [col]
    return None


def _guess_foreign_keys(frames: dict[str, pd.DataFrame], pks: dict[str, list[str] | None]) -> list[tuple]:
    out = []
    for child, frame in frames.items():
        for col in frame.columns:
            if pks[child] == [col]:
                continue
            for parent, pk in pks.items():
                if not pk or len(pk) != 1:
                    continue
                pk_col = pk[0]
                names = {pk_col.lower(), f"{parent.lower().rstrip('s')}_id", f"{parent.lower()}_id"}
                if col.lower() not in names or (parent == child and col == pk_col):
                    continue
                values = frame[col].dropna()
                if len(values) and values.isin(frames[parent][pk_col]).mean() >= 0.9:
                    out.append((child, col, parent, pk_col))
                    break
    return out


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
    text = present.astype(str)
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
    if len(sample) and sample.str.match(PHONE_RE).mean() > 0.9 and sample.str.count(r"[0-9]").min() >= 7:
        return {"sdtype": "phone_number", "pii": True}
    distinct = text.nunique()
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

"""Stand-in labels for rare values: the one function publishing gives them with and the
evaluation compares by.

A category or text value seen in fewer than ``min_count`` real rows (``privacy_min_count``,
default 5) names something few rows share (a composer of two tracks, a country one customer
lives in), so it is never published: its stand-in is. The stand-in is a function of the run
seed and the value alone (a hash picks words from a fixed word list,
as many words as the value has, in its case), so every row that drew one rare value gets the
same stand-in: the category keeps its rows and its links, only its name is new. A stand-in
that hits another rare value of the column is drawn again.

Because the function is fixed, the evaluation can rename the real rows' rare values the same
way and compare distributions *up to that renaming*: what the model learnt of a rare
category is scored, its name is not.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from synth_pipeline.stats import digest_in, value_hashes

RARE_SDTYPES = ("categorical", "text")  # labels and free text; numbers and dates are smoothed instead
MAX_TRIES = 20


def value_digests(values: pd.Series) -> np.ndarray:
    """A 64-bit hash of each value (the same for a value wherever it is: ``stats.value_hashes``)."""
    return value_hashes(values)


def rare_columns(metadata, name: str, allow: tuple[str, ...] = ()) -> list[str]:
    """The columns of ``name`` whose rare values get stand-ins (not keys, not allowed columns)."""
    table = metadata.table(name)
    keys = metadata.key_columns(name) | set(table.alternate_keys)
    return [c.name for c in table.columns.values()
            if c.sdtype in RARE_SDTYPES and c.name not in keys and f"{name}.{c.name}" not in allow]


def _labels_counted(values: pd.Series, min_count: int) -> pd.Series | None:
    """The present values whose rare ones get stand-ins: none in a column of numbers kept
    as categories (their values are published as they are), nor when ``min_count`` <= 1."""
    values = values.dropna()
    text = isinstance(values.dtype, pd.StringDtype) or values.map(lambda v: isinstance(v, str)).all()
    return values if min_count > 1 and not values.empty and text else None


def rare_values(values: pd.Series, min_count: int) -> pd.Index:
    """The values fewer than ``min_count`` rows carry; none in a constant column (nor where
    ``_labels_counted`` counts none)."""
    values = _labels_counted(values, min_count)
    counts = values.value_counts() if values is not None else pd.Series(dtype=int)
    if len(counts) <= 1:
        return pd.Index([])
    return counts.index[counts.to_numpy() < min_count]


def rare_digests(values: pd.Series, min_count: int) -> np.ndarray:
    """The sorted digests (``value_digests``) of ``rare_values``: counted by digest, without
    a table of the values themselves (4.5M distinct comments of TPC-H scale 1 took 1.3 GB)."""
    values = _labels_counted(values, min_count)
    if values is None:
        return np.array([], dtype="uint64")
    digests, counts = np.unique(value_digests(values), return_counts=True)
    return digests[counts < min_count] if len(digests) > 1 else np.array([], dtype="uint64")


def is_rare(values: pd.Series, rare_digests: np.ndarray) -> np.ndarray:
    """Which of ``values`` are among the rare values (by digest)."""
    if values.empty or not len(rare_digests):
        return np.zeros(len(values), dtype=bool)
    return values.notna().to_numpy() & digest_in(value_digests(values), rare_digests)


def stand_ins(seed: int, values: pd.Series, rare_digests: np.ndarray) -> list[str]:
    """The stand-in of each value (all at once: a column can hold many thousand rare values)."""
    from faker.providers.lorem.en_US import Provider

    words = np.asarray(Provider.word_list, dtype=object)
    texts = values.astype(str).reset_index(drop=True)
    n_words = texts.str.split().str.len().fillna(1).clip(lower=1).astype(int).to_numpy()
    out = np.empty(len(texts), dtype=object)
    todo = np.arange(len(texts))
    for attempt in range(MAX_TRIES):
        if not len(todo):
            break
        # word w of value i: a hash of (seed, attempt, w, value), all in one pass: one value has one
        # stand-in in every column (a course's department copied from its teacher's stays equal)
        keys = [f"{seed}|{attempt}|{w}|{texts[i]}" for i in todo for w in range(n_words[i])]
        picks = words[(value_digests(pd.Series(keys)) % np.uint64(len(words))).astype(np.int64)]
        ends = np.cumsum(n_words[todo])
        labels = pd.Series([_cased_like(" ".join(picks[end - n:end]), texts[i])
                            for i, n, end in zip(todo, n_words[todo], ends)], dtype=object)
        clash = digest_in(value_digests(labels), rare_digests)
        out[todo[~clash]] = labels[~clash].to_numpy()
        todo = todo[clash]
    for i in todo:  # never reached in practice (twenty draws all on rare values); never the value itself
        out[i] = f"value {value_digests(pd.Series([f'{seed}|{texts[i]}']))[0] % 10**8:08d}"
    return out.tolist()


def replace_rare(frame: pd.DataFrame, column: str, rare_digests: np.ndarray, seed: int) -> int:
    """Every value of ``frame[column]`` whose digest is rare swapped for its stand-in, in place."""
    rare = is_rare(frame[column], rare_digests)
    if not rare.any():
        return 0
    values = frame[column].astype(object)
    originals = pd.Series(pd.unique(values[rare]), dtype=object)
    lookup = dict(zip(originals, stand_ins(seed, originals, rare_digests)))
    frame[column] = values.where(~rare, values.map(lookup))
    return int(rare.sum())


def copied_columns(tables: dict[str, pd.DataFrame], metadata, table: str,
                   min_count: int) -> dict[str, list[tuple[str, str]]]:
    """Category columns of ``table`` equal, in every real row, to a category column of the
    parent row a foreign key names, one with rare values: column -> [(parent table, parent
    column)] (the parent's stand-ins are the copy's too)."""
    out: dict[str, list[tuple[str, str]]] = {}
    kinds = {c.name: c.sdtype for c in metadata.table(table).columns.values()}
    mine = [c for c, k in kinds.items() if k == "categorical"]
    for rel in metadata.foreign_keys(table):
        if rel.is_self_reference or rel.parent_table_name not in tables or not mine:
            continue
        parent = tables[rel.parent_table_name]
        theirs = [c.name for c in metadata.table(rel.parent_table_name).columns.values()
                  if c.sdtype == "categorical" and c.name in parent and len(rare_values(parent[c.name], min_count))]
        if not theirs:
            continue
        joined = tables[table][[rel.child_foreign_key, *mine]].merge(
            parent[[rel.parent_primary_key, *theirs]].add_prefix("parent."), how="inner",
            left_on=rel.child_foreign_key, right_on=f"parent.{rel.parent_primary_key}")
        if joined.empty:
            continue
        for c in mine:
            for p in theirs:
                a, b = joined[c], joined[f"parent.{p}"]
                if a.notna().any() and ((a == b) | (a.isna() & b.isna())).all():
                    out.setdefault(c, []).append((rel.parent_table_name, p))
    return out


def renamed(real: pd.DataFrame, others: list[pd.DataFrame], metadata, table: str, seed: int, min_count: int,
            allow: tuple[str, ...] = (), copied: dict[str, list[pd.Series]] | None = None
            ) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """``real`` and ``others`` (synthetic tables) with the real rows' rare category values
    renamed as a run publishes them: what a run published is unchanged, a rare real value
    another generator replayed gets the same stand-in, so both are compared up to the renaming
    (free text is not compared by value: left as it is)."""
    frames, fresh = [real, *others], False
    for column in rare_columns(metadata, table, allow):
        if column not in real or metadata.table(table).columns[column].sdtype != "categorical":
            continue
        # ``copied``: the parent columns this one copies (their rare values are renamed here too)
        rare = [rare_values(real[column], min_count)] + [rare_values(v, min_count) for v in (copied or {}).get(column, [])]
        rare = pd.Index([]).append(rare).unique()
        if not len(rare):
            continue
        if not fresh:  # the caller's frames are left as they are
            frames, fresh = [f.copy() for f in frames], True
        digests = np.sort(value_digests(pd.Series(rare)))
        for frame in frames:
            if column in frame:
                replace_rare(frame, column, digests, seed)
    return frames[0], frames[1:]


def renamed_real(frame: pd.DataFrame, metadata, table: str, seed: int, min_count: int,
                 allow: tuple[str, ...] = ()) -> pd.DataFrame:
    """The real rows with their rare category values renamed as the run publishes them."""
    return renamed(frame, [], metadata, table, seed, min_count, allow)[0]


def _cased_like(label: str, text: str) -> str:
    letters = [ch for ch in text if ch.isalpha()]
    if letters and all(ch.isupper() for ch in letters):
        return label.upper()
    if text[:1].isupper():
        return label.title() if all(w[:1].isupper() for w in text.split() if w[:1].isalpha()) else label.capitalize()
    return label

"""Key formats inferred from real values, and fresh unique keys generated in them.

Keys are never learned as categories. A format is one of:

* ``integer``: whole numbers; fresh keys are 1..n;
* ``uuid``: UUIDs of the real data's version; fresh keys from the seeded generator;
* ``pattern``: every value has the same shape of letter runs, digit runs and separators
  (``ENR-2023-00042``, ``EMP-0042``, ``MATH-101``). The last digit run becomes a counter
  (zero-padded to the real width, widened when n needs it); the other runs are drawn
  from the real values' runs at their real frequencies. A four-digit run that equals the
  year of a date column of the same row in (nearly) every real row follows that column
  (``ENR-2023-...`` for a 2023 enrollment date). A letter run that a category of the same
  row determines in every real row follows that category (``MATH-...`` for a Mathematics
  course);
* ``string``: anything else; fresh keys are ``K`` + a zero-padded counter.

A run sampled in partitions (self-contained chunks of root rows, see ``Partition``) keeps
every counter unique across them: partition ``i`` of ``n`` takes the counters ``i+1``,
``i+1+n``, ``i+1+2n``...
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from synth_pipeline.stats import determining_category, labels

UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-([0-9a-fA-F])[0-9a-fA-F]{3}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
TOKEN_RE = re.compile(r"[A-Za-z]+|[0-9]+|[^A-Za-z0-9]+")


@dataclass(frozen=True)
class Partition:
    """Which chunk of a partitioned sampling run this is: ``index`` of ``count`` (one: the whole run)."""

    index: int = 0
    count: int = 1

    def share(self, total: int) -> int:
        """This partition's part of ``total`` rows (the parts add up to ``total`` exactly)."""
        return total * (self.index + 1) // self.count - total * self.index // self.count

    def counters(self, first: np.ndarray) -> np.ndarray:
        """The run-wide counters of this partition's 1-based ``first`` counters (interleaved)."""
        return (np.asarray(first, dtype="int64") - 1) * self.count + self.index + 1


WHOLE = Partition()


@dataclass
class KeyFormat:
    kind: str
    uuid_version: int = 4
    tokens: list[tuple[str, object]] = field(default_factory=list)  # (kind, payload)
    counter_width: int = 6
    year_of: str | None = None  # the date column a year token follows
    year_token: int | None = None  # its position among the tokens
    follows: dict = field(default_factory=dict)  # token position -> (category column, {category label: run})

    YEAR_MATCH = 0.99  # share of real rows where the token must equal the date's year

    # ---------------------------------------------------------------- fit
    @classmethod
    def infer(cls, values: pd.Series) -> "KeyFormat":
        values = values.dropna()
        if len(values) == 0:
            return cls("integer")
        if pd.api.types.is_integer_dtype(values) or (
                pd.api.types.is_float_dtype(values) and np.all(values == np.round(values))):
            return cls("integer")
        text = values.astype(str)
        versions = text.str.extract(UUID_RE)[0]
        if versions.notna().all():
            return cls("uuid", uuid_version=int(versions.mode().iat[0], 16))
        return _infer_pattern(text) or cls("string", counter_width=max(6, len(str(len(text)))))

    def link_years(self, frame: pd.DataFrame, column: str, date_columns: list[str]) -> None:
        """Point a year-like choice token at the date column whose year it repeats, if any."""
        if self.kind != "pattern":
            return
        years = [i for i, (kind, payload) in enumerate(self.tokens)
                 if kind == "choice" and all(str(v).isdigit() and len(str(v)) == 4 and 1800 <= int(v) <= 2200
                                             for v in payload[0])]
        present = frame[column].notna()
        split = frame.loc[present, column].astype(str).map(TOKEN_RE.findall)
        for i in years:
            token = split.map(lambda toks: toks[i] if len(toks) > i else None)
            for date in date_columns:
                year = pd.to_datetime(frame.loc[present, date], errors="coerce").dt.year
                if year.notna().all() and (token == year.astype(int).astype(str)).mean() >= self.YEAR_MATCH:
                    self.year_of, self.year_token = date, i
                    return

    def link_categories(self, frame: pd.DataFrame, column: str, categories: list[str]) -> None:
        """Point each choice run (not a year) at the category that determines it in every real
        row, more consistently than chance would (``derived.determining_category``)."""
        if self.kind != "pattern":
            return
        present = frame[column].notna()
        split = frame.loc[present, column].astype(str).map(TOKEN_RE.findall)
        for i, (kind, _) in enumerate(self.tokens):
            if kind != "choice" or i == self.year_token:
                continue
            token = split.map(lambda toks: toks[i] if len(toks) > i else None)
            found = determining_category(token, frame, categories)
            if found is not None:
                self.follows[i] = found

    @property
    def regex(self) -> str:
        """A regular expression every generated (and real) key of this format matches."""
        if self.kind == "integer":
            return r"-?[0-9]+"
        if self.kind == "uuid":
            return r"[0-9a-f]{8}-[0-9a-f]{4}-" + f"{self.uuid_version:x}" + r"[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}"
        if self.kind == "string":
            return r"K[0-9]+"
        parts = []
        for kind, payload in self.tokens:
            if kind == "const":
                parts.append(re.escape(str(payload)))
            elif kind == "counter":
                parts.append(f"[0-9]{{{self.counter_width},}}")
            elif self.year_of is not None and len(parts) == self.year_token:
                parts.append("[0-9]{4}")  # synthetic dates may fall in years the real keys lack
            else:
                parts.append("(" + "|".join(re.escape(str(v)) for v in payload[0]) + ")")
        return "".join(parts)

    def matches(self, values: pd.Series) -> pd.Series:
        return values.astype(str).str.fullmatch(self.regex)

    # ----------------------------------------------------------- generate
    def generate(self, n: int, rng: np.random.Generator, start: int = 0, rows: pd.DataFrame | None = None,
                 part: Partition = WHOLE) -> np.ndarray:
        """``n`` distinct keys (counter values ``start+1 .. start+n``, those of ``part``);
        ``rows`` (n rows) give the date a year token follows."""
        if self.kind == "integer":
            return part.counters(np.arange(start + 1, start + n + 1, dtype="int64"))
        if self.kind == "uuid":
            return _uuid_text(rng.integers(0, 256, size=(n, 16), dtype=np.uint8), self.uuid_version)
        if self.kind == "string":
            return ("K" + _padded(part.counters(np.arange(start + 1, start + n + 1)), self.counter_width)).to_numpy(dtype=object)
        parts = []
        for i, (kind, payload) in enumerate(self.tokens):
            if kind == "const":
                parts.append(pd.Series([str(payload)] * n, dtype=object))
            elif kind == "choice":
                choices, probs = payload
                drawn = pd.Series(np.asarray(choices, dtype=object)[rng.choice(len(choices), n, p=probs)])
                if i == self.year_token and rows is not None and self.year_of in rows.columns:
                    year = pd.to_datetime(pd.Series(rows[self.year_of].to_numpy()), errors="coerce").dt.year
                    drawn = year.astype("Int64").astype(str).where(year.notna(), drawn).astype(object)
                follows = self.follows.get(i)
                if follows is not None and rows is not None and follows[0] in rows.columns:
                    looked_up = labels(pd.Series(rows[follows[0]].to_numpy())).map(follows[1])
                    drawn = looked_up.where(looked_up.notna(), drawn).astype(object)
                parts.append(drawn)
            else:
                parts.append(None)
        # The counter runs within each combination of the other parts (MATH-001 and SCI-001
        # are both unique), so a short real counter width holds many more keys.
        group = pd.Series([""] * n, dtype=object)
        for piece in parts:
            if piece is not None:
                group = group + "|" + piece
        counter = part.counters(group.groupby(group).cumcount().to_numpy() + start + 1)
        numbers = _padded(counter, self.counter_width)
        out = pd.Series([""] * n, dtype=object)
        for piece in parts:
            out = out + (numbers if piece is None else piece)
        return out.to_numpy(dtype=object)


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_UUID_DASHES = (8, 12, 16, 20)  # hex digits before each dash: 8-4-4-4-12


def _uuid_text(raw: np.ndarray, version: int | None) -> np.ndarray:
    """``str(uuid.UUID(bytes=row, version=version))`` for every row of 16 bytes, in one pass."""
    raw = raw.copy()
    if version is not None:  # the version nibble and the RFC 4122 variant bits, as uuid.UUID sets them
        raw[:, 6] = (raw[:, 6] & 0x0F) | (version << 4)
        raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    nibbles = np.empty((len(raw), 32), dtype=np.uint8)
    nibbles[:, 0::2], nibbles[:, 1::2] = raw >> 4, raw & 0x0F
    chars = np.insert(_HEX[nibbles], _UUID_DASHES, ord("-"), axis=1)
    return np.ascontiguousarray(chars).view("S36").ravel().astype("U36").astype(object)


def _padded(counter: np.ndarray, width: int) -> pd.Series:
    width = max(width, len(str(int(counter.max())))) if len(counter) else width
    return pd.Series(counter).astype(str).str.zfill(width)


def _infer_pattern(text: pd.Series) -> KeyFormat | None:
    split = text.map(TOKEN_RE.findall)
    shapes = split.map(lambda toks: tuple(_token_class(t) for t in toks))
    if shapes.nunique() != 1:
        return None
    shape = shapes.iat[0]
    digit_positions = [i for i, c in enumerate(shape) if c == "digit"]
    if not digit_positions:
        return None
    counter_at = digit_positions[-1]
    columns = list(zip(*split.tolist()))
    tokens: list[tuple[str, object]] = []
    for i, col in enumerate(columns):
        if i == counter_at:
            tokens.append(("counter", None))
            continue
        counts = pd.Series(col).value_counts()
        if len(counts) == 1:
            tokens.append(("const", counts.index[0]))
        else:
            tokens.append(("choice", (counts.index.tolist(), (counts / counts.sum()).to_numpy())))
    widths = pd.Series(columns[counter_at]).str.len()
    return KeyFormat("pattern", tokens=tokens, counter_width=int(widths.min()))


def _token_class(token: str) -> str:
    if token.isdigit():
        return "digit"
    if token.isalpha():
        return "alpha"
    return token  # separators must match exactly

"""Identity-like text (names, emails, phones, addresses...) generated with Faker.

These columns are never learned from, nor copied out of, the real data: each is produced
fresh from its sdtype. What is kept of the real column is its shape only (the phone
layout, the email domain, the null rate). Emails are built from the row's generated first
and last names when the table has them, as the real data usually does; a full name (a
guardian's) ends in the row's family name at the rate the real rows do.

A generator can still hit a real value by chance (a common name's email, a postcode). For
identifying sdtypes the spec keeps 64-bit digests of the real values (never the values) and
draws again wherever a generated value's digest is among them, so no real email, phone,
address or full name appears in the output. Given names, family names, cities and states
are left alone: every name generator reuses them and they identify no one.

One exception: a free-text column that a category of the row determines (every real course
with one name has one description, and the rows sharing a name agree far more often than
chance would) is that category's label written out, not free text. It is looked up from the
row's generated category, as the category's own value is reproduced; a category value the
lookup lacks falls back to Faker.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from faker import Faker

from synth_pipeline.schema.keys import WHOLE, Partition
from synth_pipeline.schema.metadata import COMMON_TOKENS
from synth_pipeline.stats import determining_category, labels
from synth_pipeline.thresholds import THRESHOLDS

MAX_REDRAWS = 50
FAKER_POOL = 5_000  # Faker values drawn per column once, at fit; sampling draws from them (a Faker call costs ~30 µs)
DEFAULT_LOCALE = "en_US"
# Country code top-level domains and phone country codes -> Faker locale.
_TLD_LOCALE = {"uk": "en_GB", "de": "de_DE", "fr": "fr_FR", "it": "it_IT", "es": "es_ES", "nl": "nl_NL",
               "in": "en_IN", "au": "en_AU", "ca": "en_CA", "br": "pt_BR", "pt": "pt_PT", "pl": "pl_PL",
               "se": "sv_SE", "dk": "da_DK", "no": "no_NO", "fi": "fi_FI", "cz": "cs_CZ", "ie": "en_IE",
               "nz": "en_NZ", "jp": "ja_JP", "mx": "es_MX", "ar": "es_AR", "at": "de_AT", "ch": "de_CH"}
_PHONE_LOCALE = {"44": "en_GB", "49": "de_DE", "33": "fr_FR", "39": "it_IT", "34": "es_ES", "31": "nl_NL",
                 "91": "en_IN", "61": "en_AU", "55": "pt_BR", "351": "pt_PT", "48": "pl_PL", "46": "sv_SE",
                 "45": "da_DK", "47": "no_NO", "358": "fi_FI", "420": "cs_CZ", "353": "en_IE", "64": "en_NZ",
                 "81": "ja_JP", "52": "es_MX", "54": "es_AR", "43": "de_AT", "41": "de_CH"}

_FAKER_METHOD = {
    "first_name": "first_name", "last_name": "last_name", "name": "name",
    "street_address": "street_address", "secondary_address": "secondary_address",
    "address": "address", "city": "city", "state": "state_abbr", "postcode": "postcode",
    "zipcode": "postcode", "country": "country", "company": "company", "job": "job",
    "street_name": "street_name", "license_plate": "license_plate", "ipv4_address": "ipv4",
    "url": "url", "text": "sentence", "user_name": "user_name", "ssn": "ssn", "iban": "iban",
}


@dataclass
class IdentitySpec:
    column: str
    sdtype: str
    null_rate: float = 0.0
    template: str = ""  # phone layout ('(###) ###-####') or email domain
    real_digests: frozenset[int] = field(default_factory=frozenset)  # identifying sdtypes only
    family_of: str | None = None  # a full name ends in this column's value ...
    family_rate: float = 0.0  # ... in this share of the real rows
    locale: str = DEFAULT_LOCALE  # Faker's, told from the table's emails and phones
    lookup: tuple[str, dict] | None = None  # free text a category determines: (column, {label: text})
    words: int = 0  # free text: the real values' usual number of words (a title has 3, a note 12)
    period: bool = True  # ... whether they end in a full stop
    title_case: bool = False  # ... and whether every word starts upper-case (titles)
    pools: dict[str, list[str]] = field(default_factory=dict)  # Faker values drawn at fit (``draw_pools``)

    SHARED_FAMILY_MIN = 0.2  # below it, a shared family name is taken as chance

    @property
    def identifying(self) -> bool:
        return self.sdtype not in COMMON_TOKENS

    @classmethod
    def fit(cls, column: str, sdtype: str, values: pd.Series, frame: pd.DataFrame | None = None,
            family_columns: list[str] = (), categories: list[str] = ()) -> "IdentitySpec":
        """``frame`` and ``family_columns`` (the table's last-name columns) let a full-name
        column learn how often it ends in the row's family name; ``categories`` (the table's
        categorical columns), which of them determines a free-text column."""
        spec = cls._fit(column, sdtype, values)
        if sdtype == "text" and frame is not None:
            spec.lookup = _determining_category(values, frame, categories)
        if sdtype == "name" and frame is not None:
            last = values.astype(str).str.split().str[-1]
            for other in family_columns:
                rate = float((last == frame[other].astype(str)).where(values.notna()).mean())
                if rate >= cls.SHARED_FAMILY_MIN:
                    spec.family_of, spec.family_rate = other, rate
                    break
        return spec

    @classmethod
    def _fit(cls, column: str, sdtype: str, values: pd.Series) -> "IdentitySpec":
        present = values.dropna().astype(str)
        template = ""
        if len(present) and sdtype == "phone_number":
            template = present.str.replace(r"[0-9]", "#", regex=True).mode().iat[0]
        elif len(present) and sdtype == "email":
            template = present.str.split("@").str[-1].mode().iat[0]
        spec = cls(column, sdtype, float(values.isna().mean()), template)
        if len(present) and sdtype == "text":
            spec.words = max(1, int(present.str.split().str.len().median()))
            spec.period = bool(present.str.rstrip().str.endswith(".").mean() >= 0.5)
            spec.title_case = bool(present.str.split().map(lambda ws: all(w[:1].isupper() for w in ws if w[:1].isalpha()))
                                   .mean() >= 0.5)
        if spec.identifying:
            spec.real_digests = frozenset(digest(v) for v in present.unique())
        return spec

    def draw_pools(self, seed: int) -> None:
        """The Faker values this column is generated from, ``FAKER_POOL`` of each, drawn once
        (at fit, in the column's locale): sampling then draws among them rather than calling
        Faker per row (a random subset of independent draws is itself independent draws;
        beyond the pool, values repeat as shared addresses and common names do). Real values
        of an identifying column are left out of its pool."""
        fake = Faker(self.locale)
        fake.seed_instance(seed)
        rng = np.random.default_rng(seed)
        self.pools = {}
        if self.sdtype in ("email", "phone_number"):  # built per row (from the names; a layout)
            return
        if self.family_of is not None:
            self.pools = {"first_name": _faker_values(fake.first_name, rng, FAKER_POOL),
                          "last_name": _faker_values(fake.last_name, rng, FAKER_POOL)}
            return
        values = self._draw(fake, rng, FAKER_POOL)
        self.pools = {"values": [v for v in values if not self.is_real(v)] or values}

    def _pool(self, key: str) -> list[str] | None:
        return getattr(self, "pools", {}).get(key)  # a model stored before pools: Faker per row

    def is_real(self, value: str) -> bool:
        return bool(self.real_digests) and digest(value) in self.real_digests

    def generate(self, n: int, seed: int, rows: pd.DataFrame | None = None, part: Partition = WHOLE) -> pd.Series:
        fake = Faker(self.locale)
        fake.seed_instance(seed)
        rng = np.random.default_rng(seed)
        if self.sdtype == "email":
            values = _emails(fake, n, rows, self.template or "example.org", self.is_real, part)
        elif (lookup := self.lookup) is not None and rows is not None and lookup[0] in rows.columns:
            category = labels(pd.Series(rows[lookup[0]].to_numpy()))
            looked_up = category.map(lookup[1]).to_numpy(dtype=object)
            missing = np.nonzero(pd.isna(looked_up) & ~category.isin(lookup[2] if len(lookup) > 2 else ()).to_numpy())[0]
            looked_up[missing] = self._draw(fake, rng, len(missing))  # a category the real rows lack
            # nulls: the categories whose real text is always null, then the rest at their own rate
            series = pd.Series(looked_up, dtype=object)
            rate = lookup[3] if len(lookup) > 3 else self.null_rate
            return series.where(rng.random(n) >= rate) if rate > 0 else series
        elif self.family_of is not None and rows is not None and self.family_of in rows.columns:
            values = [f"{first} {last}" for first, last in zip(
                _faker_values(fake.first_name, rng, n, self._pool("first_name")),
                _faker_values(fake.last_name, rng, n, self._pool("last_name")))]
            family = rows[self.family_of].astype(str).to_numpy()
            for i in np.nonzero(rng.random(n) < self.family_rate)[0]:
                values[i] = f"{values[i].split()[0]} {family[i]}"
            # a real full name: another given name, the family name kept
            self._redraw(values, lambda idx: [f"{fake.first_name()} {values[i].split()[-1]}" for i in idx])
        else:
            pool = self._pool("values")
            values = self._draw(fake, rng, n) if pool is None else _faker_values(None, rng, n, pool)
            self._redraw(values, lambda idx: self._draw(fake, rng, len(idx)))
        series = pd.Series(values, dtype=object)
        if self.null_rate > 0:
            series = series.where(rng.random(n) >= self.null_rate)
        return series

    def _redraw(self, values: list[str], draw) -> None:
        """Replace values whose digest is a real value's with ``draw(indices)``, a few rounds at most."""
        for _ in range(MAX_REDRAWS):
            clash = [i for i, v in enumerate(values) if self.is_real(v)]
            if not clash:
                return
            for i, v in zip(clash, draw(clash)):
                values[i] = v

    def _draw(self, fake: Faker, rng: np.random.Generator, n: int) -> list[str]:
        if self.sdtype == "phone_number":
            return _phones(rng, n, self.template or "(###) ###-####")
        if self.sdtype == "text" and self.words:  # as long as the real text, a title without a stop
            words, period, title = self.words, self.period, self.title_case
            values = [v.title() if title else v for v in _faker_values(lambda: fake.sentence(nb_words=words), rng, n)]
            return values if period else [v.rstrip(".") for v in values]
        return _faker_values(getattr(fake, _FAKER_METHOD.get(self.sdtype, "word")), rng, n)


def _determining_category(values: pd.Series, frame: pd.DataFrame, categories: list[str]) -> tuple | None:
    """The category (fewest values first) under which every real row of one value has the same
    text, more consistently than chance would: ``(column, {label: text}, labels whose text is
    always null, null rate of the other rows)``; None when no category does."""
    known = values.notna()
    text = values[known].astype(str)
    if text.nunique() < 2:
        return None
    found = determining_category(text, frame, categories)
    if found is None:
        return None
    every = labels(frame[found[0]])
    null_only = sorted(set(every[~known]) - set(found[1]))
    with_text = every.isin(list(found[1])).to_numpy()
    rate = float(values[with_text].isna().mean()) if with_text.any() else 0.0
    return found[0], found[1], tuple(null_only), rate


def _faker_values(method, rng: np.random.Generator, n: int, pool: list[str] | None = None) -> list[str]:
    """``n`` values of a Faker provider: drawn among ``pool`` (its values drawn before: each
    at most once up to its size, then at random), or one call each up to FAKER_POOL values
    and beyond that (a large ``scale``) from a pool of FAKER_POOL calls, so the cost stops
    growing with rows (values then repeat, as shared addresses and common names do)."""
    if pool is None and n <= FAKER_POOL:
        return [method() for _ in range(n)]
    if pool is None:
        pool = [method() for _ in range(FAKER_POOL)]
    values = np.asarray(pool, dtype=object)
    pick = rng.choice(len(values), n, replace=False) if n <= len(values) else rng.integers(0, len(values), n)
    return values[pick].tolist()


def guess_locale(frame: pd.DataFrame, sdtypes: dict[str, str]) -> str:
    """The Faker locale most of the table's emails (country domain) or phones (+country code)
    point at; ``en_US`` when they point nowhere in particular (``.com``, no prefix, a mix)."""
    votes: list[str | None] = []
    for column, sdtype in sdtypes.items():
        values = frame[column].dropna().astype(str).head(2000)
        if sdtype == "email":
            votes += [_TLD_LOCALE.get(v.rsplit(".", 1)[-1].lower()) for v in values]
        elif sdtype == "phone_number":
            for v in values:
                digits = v.lstrip()[1:].replace(" ", "").replace("(", "") if v.lstrip().startswith("+") else ""
                votes.append(next((_PHONE_LOCALE[digits[:k]] for k in (3, 2) if digits[:k] in _PHONE_LOCALE), None))
    if not votes:
        return DEFAULT_LOCALE
    counts = pd.Series(votes, dtype=object).value_counts(dropna=False)
    top = counts.index[0]
    return top if isinstance(top, str) and counts.iat[0] / len(votes) >= THRESHOLDS.locale_min_share else DEFAULT_LOCALE


def digest(value) -> int:
    return int.from_bytes(hashlib.blake2b(str(value).encode(), digest_size=8).digest(), "little")


def _emails(fake: Faker, n: int, rows: pd.DataFrame | None, domain: str, is_real, part: Partition = WHOLE) -> list[str]:
    if rows is not None and {"first_name", "last_name"} <= set(rows.columns):
        stems = (rows["first_name"].astype(str) + "." + rows["last_name"].astype(str)).str.lower()
        stems = stems.str.replace(r"[^a-z.]", "", regex=True).tolist()
    else:
        stems = [fake.user_name() for _ in range(n)]
    seen: dict[str, int] = {}
    out = []
    # A running number keeps addresses unique (and off real ones), as mail systems do; a
    # partition takes every count-th number from its index, unique across partitions.
    for stem in stems:
        j = seen.get(stem, 0)
        while is_real(_address(stem, j * part.count + part.index, domain)):
            j += 1
        seen[stem] = j + 1
        out.append(_address(stem, j * part.count + part.index, domain))
    return out


def _address(stem: str, number: int, domain: str) -> str:
    return f"{stem}{number if number else ''}@{domain}"


def _phones(rng: np.random.Generator, n: int, template: str) -> list[str]:
    digits = rng.integers(0, 10, size=(n, template.count("#"))).astype(str)
    parts = template.split("#")
    out = np.full(n, parts[0], dtype=object)
    for i, sep in enumerate(parts[1:]):
        out = out + digits[:, i] + sep
    return out.tolist()

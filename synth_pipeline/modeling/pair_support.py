"""Category pairs the real data never shows, redrawn from the real conditional distribution.

A short GAN training learns each category's frequency well but pairs strongly associated
categories loosely: a "goalkeeper" position in a basketball game, a team of another game.
For every pair of categorical columns whose real association is strong (Cramér's V), the
column with more values follows the other: a generated row whose pair never occurs in the
real table gets the follower redrawn from the real distribution given the leader's value.
Rows whose pair does occur keep what the GAN gave them, so the GAN's links to the other
columns stay wherever they are plausible.

A many-valued category that determines a column copied from the parent (a course's name
sets its department, and the department is the lead teacher's) follows that column the
same way: a name of another department is redrawn among the real names of the course's
department.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from synth_pipeline.modeling.transforms import put_column
from synth_pipeline.stats import agreement_by_chance, cramers_v, labels
from synth_pipeline.thresholds import THRESHOLDS

SEPARATOR = "\x1f"
NULL_TEXT = "\x00null"


@dataclass
class PairSupport:
    leader: str
    follower: str
    association: float
    seen: tuple = ()  # "leader<SEP>follower" value pairs, as text, sorted (a set would pickle in hash order)
    given: dict = field(default_factory=dict)  # leader value (text) -> (follower values, probabilities)
    nulls: bool = False  # a null follower is a value of its own (a country without states)

    @property
    def label(self) -> str:
        return f"{self.follower} given {self.leader} (V={self.association:.2f})"

    def apply(self, frame: pd.DataFrame, rng: np.random.Generator) -> int:
        """Redraw the follower where the pair never occurs in the real table; returns how many."""
        if not {self.leader, self.follower} <= set(frame.columns) or frame.empty:
            return 0
        lead, follow = frame[self.leader], frame[self.follower]
        nulls = self.nulls
        present = lead.notna() & (follow.notna() | nulls)
        lead_text, follow_text = lead.astype(str), follow.astype(str)
        if nulls:
            follow_text = follow_text.where(follow.notna(), NULL_TEXT)
        pairs = lead_text + SEPARATOR + follow_text
        unseen = present & ~pairs.isin(list(self.seen)) & lead_text.isin(list(self.given))
        rows = np.nonzero(unseen.to_numpy())[0]
        lead_text = lead_text.to_numpy()
        if not len(rows):
            return 0
        new = follow.to_numpy(dtype=object).copy()
        for value, members in pd.Series(rows).groupby(lead_text[rows]).groups.items():
            values, probs = self.given[value]
            positions = rows[np.asarray(members)]
            new[positions] = values[rng.choice(len(values), size=len(positions), p=probs)]
        put_column(frame, self.follower, new)
        return len(rows)


def fit_pair_supports(frame: pd.DataFrame, columns: list[str]) -> list[PairSupport]:
    """One support per follower column: its most associated leader above THRESHOLDS.min_association;
    a column that leads is never a follower, so redrawing never chains."""
    if len(frame) < THRESHOLDS.pair_support_min_rows:
        return []
    # categories that repeat (a near-unique column, e.g. 40 course names over 40 courses, has no
    # conditional distribution to speak of: redrawing it would only flatten its marginal)
    usable = [c for c in columns if 2 <= frame[c].nunique() <= min(THRESHOLDS.max_values, len(frame) // 4)]
    scored = []
    for i, a in enumerate(usable):
        for b in usable[i + 1:]:
            both = frame[[a, b]].dropna()
            if len(both) < THRESHOLDS.pair_support_min_rows:
                continue
            v = cramers_v(both[a].astype(str), both[b].astype(str))
            if v >= THRESHOLDS.min_association:
                leader, follower = (a, b) if frame[a].nunique() <= frame[b].nunique() else (b, a)
                scored.append((v, leader, follower))
    supports: dict[str, PairSupport] = {}
    leaders: set[str] = set()
    for v, leader, follower in sorted(scored, reverse=True):
        if follower in supports or follower in leaders or leader in supports:
            continue
        supports[follower] = _support(frame, leader, follower, v)
        leaders.add(leader)
    return list(supports.values())


def _support(frame: pd.DataFrame, leader: str, follower: str, association: float,
             follower_nulls: bool = False) -> PairSupport:
    """The real pairs of the two columns and the follower's real distribution per leader value
    (``follower_nulls``: a null follower is one of its values, a British customer has no state)."""
    both = frame[[leader, follower]].dropna(subset=[leader] if follower_nulls else None)
    lead_text, follow_text = both[leader].astype(str), both[follower].astype(str)
    if follower_nulls:
        follow_text = follow_text.where(both[follower].notna(), NULL_TEXT)
    given = {}
    for value, group in both.groupby(both[leader].astype(str))[follower]:
        counts = group.value_counts(dropna=not follower_nulls)
        values = np.array([None if pd.isna(v) else v for v in counts.index], dtype=object)
        given[value] = (values, (counts / counts.sum()).to_numpy())
    return PairSupport(leader, follower, association, tuple(sorted(set(lead_text + SEPARATOR + follow_text))), given,
                       follower_nulls)


def fit_determined_supports(frame: pd.DataFrame, columns: list[str], copied: list[str],
                            taken: set[str] = frozenset()) -> list[PairSupport]:
    """For each copied column, the generated categories (not in ``taken``) that determine it in
    every real row, more consistently than chance would, follow it."""
    supports = []
    taken = set(taken) | set(copied)  # a follower never leads: redrawing never chains
    for leader in copied:
        lead = labels(frame[leader])
        if lead.nunique() < 2:
            continue
        for follower in columns:
            if follower in taken or follower == leader:
                continue
            keys = labels(frame[follower])
            if not (lead.groupby(keys).nunique() == 1).all() or agreement_by_chance(lead, keys) >= THRESHOLDS.map_chance:
                continue
            supports.append(_support(frame, leader, follower, 1.0))
            taken = taken | {follower, leader}
    return supports


def fit_nested_supports(frame: pd.DataFrame, columns: list[str], existing: list[PairSupport] = ()) -> list[PairSupport]:
    """A many-valued category nested in a few-valued one (a customer's state within its country:
    each state lies in one country, and each country has states or has none, more
    consistently than chance would) is redrawn within the row's leader value where the
    generated pair never occurs, a null among its values (a country whose customers give no
    state). Followers never lead, leaders never follow."""
    supports: list[PairSupport] = []
    followers = {s.follower for s in existing}
    leading = {s.leader for s in existing}
    leaders = [c for c in columns if 2 <= frame[c].nunique() <= THRESHOLDS.max_values]  # the chance test guards
    for follower in columns:
        if follower in followers or follower in leading:
            continue
        known = frame[follower].notna()
        given = pd.Series(known.to_numpy().astype(int))  # whether the row gives the follower at all
        keys = labels(frame.loc[known, follower])
        for leader in leaders:
            if leader in followers or leader == follower or frame[follower].nunique() <= frame[leader].nunique():
                continue
            lead = labels(frame.loc[known, leader])
            if not (lead.groupby(keys).nunique() == 1).all():
                continue
            chance = agreement_by_chance(lead, keys)
            # where the leader also says whether the follower is given (countries with states,
            # countries without), that agreement is evidence too
            every = labels(frame[leader]).reset_index(drop=True)
            if 0 < known.sum() < len(known) and (given.groupby(every).nunique() == 1).all():
                chance *= agreement_by_chance(given, every)
            if chance >= THRESHOLDS.map_chance:
                continue
            supports.append(_support(frame, leader, follower, 1.0, follower_nulls=True))
            followers.add(follower)
            leading.add(leader)
            break
    return supports


@dataclass
class NameQuota:
    """A near-unique category (40 course names over 40 courses): drawn row by row, its values
    collide and others go missing. Each value gets its real share of the rows (remainders
    rounded at random); rows of a value over its quota move to values under theirs, among
    the values of the row's leader where a leader sets the column (a name stays within the
    course's department)."""

    column: str
    values: np.ndarray
    shares: np.ndarray
    leader: str = ""
    leader_of: dict = field(default_factory=dict)  # value -> its leader's value (as text)

    @property
    def label(self) -> str:
        return f"{self.column} kept to its real counts" + (f" within {self.leader}" if self.leader else "")

    @classmethod
    def fit(cls, frame: pd.DataFrame, column: str, supports: list[PairSupport]) -> "NameQuota | None":
        values = frame[column].dropna()
        distinct = values.nunique()
        if distinct < THRESHOLDS.near_unique_min_values or distinct < THRESHOLDS.near_unique_share * len(values):
            return None
        shares = values.value_counts(normalize=True)
        quota = cls(column, shares.index.to_numpy(dtype=object), shares.to_numpy())
        support = next((s for s in supports if s.follower == column), None)
        if support is not None:
            both = frame[[support.leader, column]].dropna()
            quota.leader = support.leader
            quota.leader_of = dict(zip(both[column], both[support.leader].astype(str)))
        return quota

    def apply(self, frame: pd.DataFrame, rng: np.random.Generator) -> int:
        """Move rows off values over their quota onto values under it; returns the rows moved."""
        if self.column not in frame.columns or frame.empty:
            return 0
        present = np.nonzero(frame[self.column].notna().to_numpy())[0]
        expected = self.shares * len(present)
        quota = np.floor(expected).astype(int)
        remainder = len(present) - int(quota.sum())
        if remainder > 0:
            fractions = expected - quota
            quota[rng.choice(len(quota), remainder, replace=False, p=fractions / fractions.sum())] += 1
        codes = pd.Index(self.values).get_indexer(frame[self.column].to_numpy(dtype=object)[present])
        # rows beyond their value's quota, taken at random within each value
        order = rng.permutation(len(present))
        rank = pd.Series(np.arange(len(order))).groupby(codes[order]).cumcount().to_numpy()
        over = order[(codes[order] >= 0) & (rank >= quota[np.maximum(codes[order], 0)])]
        held = np.bincount(codes[codes >= 0], minlength=len(quota))
        wanted = rng.permutation(np.repeat(np.arange(len(quota)), np.maximum(quota - held, 0)))
        if not len(over) or not len(wanted):
            return 0
        if self.leader and self.leader in frame.columns:
            row_group = frame[self.leader].astype(str).to_numpy(dtype=object)[present[over]]
            want_group = np.array([self.leader_of.get(v, "") for v in self.values[wanted]], dtype=object)
        else:
            row_group = np.zeros(len(over), dtype=object)
            want_group = np.zeros(len(wanted), dtype=object)
        out = frame[self.column].to_numpy(dtype=object).copy()
        moved = 0
        pending = pd.Series(np.arange(len(wanted))).groupby(want_group).indices
        taken = {g: 0 for g in pending}
        for r, g in zip(over, row_group):
            slots = pending.get(g)
            if slots is None or taken[g] >= len(slots):
                continue
            out[present[r]] = self.values[wanted[slots[taken[g]]]]
            taken[g] += 1
            moved += 1
        put_column(frame, self.column, out)
        return moved

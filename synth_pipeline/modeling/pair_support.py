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
from scipy.stats.contingency import association

from synth_pipeline.modeling.derived import MAP_CHANCE, agreement_by_chance
from synth_pipeline.modeling.transforms import labels

MIN_ASSOCIATION = 0.5
MAX_VALUES = 60
MIN_ROWS = 30
SEPARATOR = "\x1f"


@dataclass
class PairSupport:
    leader: str
    follower: str
    association: float
    seen: set = field(default_factory=set)  # "leader<SEP>follower" value pairs, as text
    given: dict = field(default_factory=dict)  # leader value (text) -> (follower values, probabilities)

    @property
    def label(self) -> str:
        return f"{self.follower} given {self.leader} (V={self.association:.2f})"

    def apply(self, frame: pd.DataFrame, rng: np.random.Generator) -> int:
        """Redraw the follower where the pair never occurs in the real table; returns how many."""
        if not {self.leader, self.follower} <= set(frame.columns) or frame.empty:
            return 0
        lead, follow = frame[self.leader], frame[self.follower]
        present = lead.notna() & follow.notna()
        lead_text, follow_text = lead.astype(str), follow.astype(str)
        pairs = lead_text + SEPARATOR + follow_text
        unseen = present & ~pairs.isin(self.seen) & lead_text.isin(list(self.given))
        rows = np.nonzero(unseen.to_numpy())[0]
        lead_text = lead_text.to_numpy()
        if not len(rows):
            return 0
        new = follow.to_numpy(dtype=object).copy()
        for value, members in pd.Series(rows).groupby(lead_text[rows]).groups.items():
            values, probs = self.given[value]
            positions = rows[np.asarray(members)]
            new[positions] = values[rng.choice(len(values), size=len(positions), p=probs)]
        frame[self.follower] = pd.Series(new, index=frame.index).astype(follow.dtype) \
            if follow.dtype != object else new
        return len(rows)


def fit_pair_supports(frame: pd.DataFrame, columns: list[str]) -> list[PairSupport]:
    """One support per follower column: its most associated leader above MIN_ASSOCIATION;
    a column that leads is never a follower, so redrawing never chains."""
    if len(frame) < MIN_ROWS:
        return []
    # categories that repeat (a near-unique column, e.g. 40 course names over 40 courses, has no
    # conditional distribution to speak of: redrawing it would only flatten its marginal)
    usable = [c for c in columns if 2 <= frame[c].nunique() <= min(MAX_VALUES, len(frame) // 4)]
    scored = []
    for i, a in enumerate(usable):
        for b in usable[i + 1:]:
            both = frame[[a, b]].dropna()
            if len(both) < MIN_ROWS:
                continue
            table = pd.crosstab(both[a].astype(str), both[b].astype(str))
            if min(table.shape) < 2:
                continue
            v = float(association(table.to_numpy(), method="cramer"))
            if v >= MIN_ASSOCIATION:
                leader, follower = (a, b) if frame[a].nunique() <= frame[b].nunique() else (b, a)
                scored.append((v, leader, follower))
    supports: dict[str, PairSupport] = {}
    leaders: set[str] = set()
    for v, leader, follower in sorted(scored, reverse=True):
        if follower in supports or follower in leaders or leader in supports:
            continue
        both = frame[[leader, follower]].dropna()
        lead_text, follow_text = both[leader].astype(str), both[follower].astype(str)
        given = {}
        for value, group in both.groupby(lead_text)[follower]:
            counts = group.value_counts()
            given[value] = (counts.index.to_numpy(dtype=object), (counts / counts.sum()).to_numpy())
        supports[follower] = PairSupport(leader, follower, v, set(lead_text + SEPARATOR + follow_text), given)
        leaders.add(leader)
    return list(supports.values())


def fit_determined_supports(frame: pd.DataFrame, columns: list[str], copied: list[str],
                            taken: set[str] = frozenset()) -> list[PairSupport]:
    """For each copied column, the generated categories (not in ``taken``) that determine it in
    every real row, more consistently than chance would, follow it."""
    supports = []
    for leader in copied:
        lead = labels(frame[leader])
        if lead.nunique() < 2:
            continue
        for follower in columns:
            if follower in taken or follower == leader:
                continue
            keys = labels(frame[follower])
            if not (lead.groupby(keys).nunique() == 1).all() or agreement_by_chance(lead, keys) >= MAP_CHANCE:
                continue
            both = frame[[leader, follower]].dropna()
            lead_text, follow_text = both[leader].astype(str), both[follower].astype(str)
            given = {}
            for value, group in both.groupby(lead_text)[follower]:
                counts = group.value_counts()
                given[value] = (counts.index.to_numpy(dtype=object), (counts / counts.sum()).to_numpy())
            supports.append(PairSupport(leader, follower, 1.0, set(lead_text + SEPARATOR + follow_text), given))
            taken = taken | {follower}
    return supports

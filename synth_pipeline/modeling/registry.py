"""The mechanisms a table model is made of, by name: what each keeps, and whether switching
it off changes what the GAN is trained on (``refit``) or only how rows are sampled.

A name listed in the configuration's ``mechanisms_off`` is neither fitted nor applied (the
ablation benchmark switches each off in turn: ``python -m synth_pipeline.evaluation.ablation``).
"""

from __future__ import annotations

from dataclasses import dataclass

from synth_pipeline.errors import ConfigError


@dataclass(frozen=True)
class Entry:
    name: str
    phase: str
    refit: bool  # switching it off changes the training data: the ablation refits
    keeps: str


MECHANISMS: tuple[Entry, ...] = (
    Entry("parent_context", "generate", True, "a child row is generated given its parent row's encoded context"),
    Entry("parent_copies", "generate", True, "columns equal to a primary-parent column in every real row are copied"),
    Entry("derived", "generate", True, "columns computed from others (sums, differences, offsets) are derived"),
    Entry("residuals", "generate", True, "numbers the parent context predicts are learned as residuals"),
    Entry("raking", "generate", False, "candidates per row, raked to the real category shares"),
    Entry("parent_joints", "generate", False, "categories raked to their real shares given the parent's value"),
    Entry("pair_joints", "generate", False, "column pairs raked to their real joint shares"),
    Entry("quotas", "generate", False, "a small table's category counts held to the real shares"),
    Entry("count_calibration", "generate", False, "children-per-parent counts mapped by rank onto the real ones"),
    Entry("count_correlation", "generate", False, "the real rank correlation of a row's child counts imposed"),
    Entry("root_correlation", "generate", False, "a root table's numbers and counts re-paired to their real correlation"),
    Entry("sibling_spreads", "categories", False, "how many distinct values a parent's children share"),
    Entry("pair_supports", "categories", False, "strongly associated category pairs kept to the real support"),
    Entry("one_per_parent", "categories", False, "a value each parent's children hold once"),
    Entry("name_quotas", "categories", False, "near-unique categories kept to their real counts"),
    Entry("label_counts", "categories", False, "a lookup table's labels and their real children"),
    Entry("conditionals", "categories", False, "numbers kept to their real distribution per category"),
    Entry("link_signatures", "link", False, "second parents picked by the categories children pick them by"),
    Entry("link_groups", "link", False, "the rows of one category share one second parent"),
    Entry("bridges", "link", False, "second foreign keys agree with the path through another table"),
    Entry("link_ones", "link", False, "a value each second parent's children hold once"),
    Entry("path_copies", "link", False, "a foreign key equal to the one reached along a path is copied"),
    Entry("count_totals", "counts", False, "a small table's children per category"),
    Entry("counts_within", "counts", False, "children only for some values of a category"),
    Entry("null_patterns", "finish", False, "columns null together in every real row stay so"),
    Entry("number_shapes", "finish", False, "each number column's range, support and grid"),
)
NAMES = tuple(m.name for m in MECHANISMS)


def entry(name: str) -> Entry:
    return next(m for m in MECHANISMS if m.name == name)


def require_known(names) -> tuple[str, ...]:
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        raise ConfigError(f"config: mechanisms_off: unknown mechanism(s) {', '.join(unknown)}; "
                          f"known: {', '.join(NAMES)}")
    return tuple(names)

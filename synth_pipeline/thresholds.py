"""Every threshold a mechanism decides by, in one place.

These are the numbers that decide whether a pattern found in the real data is kept (a rule,
a path, an association) and how strongly. They were set on the school, Berka, Chinook and
Sakila databases and are meant to hold on any schema: most are either a minimum of rows below
which a pattern means nothing, or a chance test (how often random data would show the pattern).
The ablation benchmark (``python -m synth_pipeline.evaluation.ablation``, docs/ablation.md)
measures what each mechanism they guard contributes.

Engineering limits (chunk sizes, work caps, training-row caps) stay beside their code.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Thresholds:
    # --- columns (schema.number_shapes, modeling.transforms)
    support_max: int = 50  # distinct real values up to which a number's values themselves are its support
    few_values: int = 12  # a number with at most this many distinct values is encoded as a category
    # a category with more values is learned as one number (its values in order of frequency,
    # decoded by the real shares) rather than one-hot: a one-hot span this wide is most of the
    # generator's and discriminator's width, and of the cost of training and sampling
    wide_category: int = 100

    # --- rules between columns (schema.constraints, stats)
    constraints_min_rows: int = 20  # real rows before a rule between columns is looked for
    max_determinant_values: int = 100  # a category with more values never determines another column
    map_chance: float = 1e-3  # a category determines a column only if agreeing that well is rarer by chance
    path_max_chance: float = 0.5  # a foreign key implied by a path: random links must agree less often than this
    max_sum_terms: int = 8  # child number columns tried as terms of a parent's sum
    min_shared: float = 0.2  # parents with two or more children, below which a "sum" is mostly a copy
    links_min_group_rows: int = 20  # linked rows before a category whose rows share one parent is looked for

    # --- derived columns (modeling.derived)
    derived_min_rows: int = 20  # real rows before a column is derived from others
    units_apart: int = 100  # x <= y over disjoint ranges with medians this far apart: units, not a rule
    linear_r: float = 0.99  # |Pearson r| from which a number is rebuilt from its line through another
    linear_min_values: int = 5  # a number with fewer distinct values is a category in disguise
    gap_direction_margin: float = 0.2  # |rank correlation| the gap must have less with the later column

    # --- columns copied from the parent (modeling.mechanisms.ParentCopies)
    min_copy_rows: int = 5  # rows before a column may be found equal to a parent column (and rarer than chance)

    # --- the generator's candidates and raking (modeling.generator, modeling.marginals)
    candidates_per_row: int = 10  # candidates generated per output row; raking keeps the one that fits the shares
    pair_candidates_per_row: int = 20  # ... where column pairs are raked too (more targets need more choice)
    # fewer candidates where a probe shows raking meets every target as closely with them (the
    # largest share of a target's cells it misses, within this of what the full count reaches)
    candidates_tolerance: float = 0.005
    # candidates drawn from one forward pass of the generator (its categories and modes drawn
    # again from the pass's scores); the probe takes fewer passes only within the tolerance above
    draws_per_pass: int = 4
    quota_max_rows: int = 2000  # up to this many rows, each category's count is held to its real share
    quota_miss: float = 1e-3  # weight left to a candidate whose value has used up its quota
    max_parent_values: int = 30  # a parent category with more values is not raked in a pair
    min_pair_rows: int = 300  # real rows before a table's column pairs are raked
    min_rows_per_cell: int = 5  # ... and a pair's real rows per cell of its contingency table
    pair_bins: int = 10  # a number or date is cut into its real deciles (the evaluation's bins)
    pair_shrinkage: float = 0.05  # weight of the independent shares mixed into a pair's real shares

    # --- category pairs and name catalogues (modeling.pair_support)
    min_association: float = 0.5  # Cramér's V from which a category pair is kept to its real support
    max_values: int = 60  # categories with more values are not paired
    pair_support_min_rows: int = 30  # real rows with both values before a pair is looked at
    near_unique_share: float = 0.5  # distinct values per row from which a category is a catalogue of names
    near_unique_min_values: int = 10  # ... with at least this many values

    # --- numbers per category (modeling.conditional)
    min_eta2: float = 0.05  # share of a number's variance a category must explain to shape it
    conditional_min_group_rows: int = 30  # real rows of a category value before its own distribution is used
    conditional_max_categories: int = 60  # a category with more values does not shape a number
    pair_leader_gain: float = 0.01  # eta2 two categories together must add to the better one alone

    # --- children per parent (modeling.cardinality)
    min_zero_parents: int = 10  # childless parents needed before children are kept to some category values
    count_totals_max_rows: int = 500  # tables this small have their children's totals per category held
    count_totals_min_rows_per_value: int = 5  # ... by categories with this many real rows per value on average

    # --- siblings (modeling.siblings)
    min_parents: int = 30  # parents before a pattern among siblings is looked for
    min_several: int = 10  # parents with several children, for a value held once per parent to mean anything
    max_share_of_chance: float = 0.85  # real distinct values per parent at most this share of shuffled ones

    # --- the parent context (modeling.context)
    context_max_categories: int = 15  # a context category keeps its most frequent values, the rest pooled

    # --- second foreign keys (modeling.links, modeling.signatures, schema.paths, modeling.bridges)
    signature_max_values: int = 20  # a parent category with more values is not a signature
    signature_min_distance: float = 0.15  # linked parents' share of a value must differ this much from all parents'
    signature_min_association: float = 0.3  # ... or go with the child's categories by this Cramér's V
    min_rate: float = 0.2  # real rows agreeing with a path before it is kept
    min_lift: float = 0.15  # ... by this much more than shuffled links agree
    path_rate: float = 0.99  # agreement in nearly every real row (a handful off is noise) is a rule
    by_category_gain: float = 0.5  # a category must halve the rows whose agreement is uncertain to set the share
    by_category_min_rows: int = 10  # real rows of every value of that category
    overflow_per_parent: int = 1  # rows a parent may take beyond its count for a partial path
    max_shifted_parents: float = 0.05  # share of parents whose child count may move toward their routes' demand

    # --- identity text (modeling.pii)
    locale_min_share: float = 0.5  # share of values that must point to one locale to use it


THRESHOLDS = Thresholds()

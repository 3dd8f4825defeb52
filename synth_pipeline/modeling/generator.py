"""The generated rows: a conditional CTGAN over the table's modelled columns and child counts,
with candidates raked to the real shares.

Each output row is chosen among ``THRESHOLDS.candidates_per_row`` generated candidates (``raking``) so
that category shares follow the real ones (``marginals.rake_weights``); where column pairs
are raked too (``pair_joints``: a number's decile with a category, two categories), among
more (pairs with a primary-parent column included). Few rows (a small table): the category counts are held to the real
shares exactly (``quotas``). The GAN is given each row's parent context (``parent_context``).
A large table draws its candidates from fewer forward passes of the GAN, the categories
raking reads drawn again from each pass's scores, where a probe at fit time shows raking
meets the targets as closely so (``Generator._fewest_passes``).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd

from synth_pipeline.modeling.ctgan_model import ContextCTGAN, GanSettings
from synth_pipeline.modeling.marginals import (
    PairJoints,
    category_targets,
    choose_per_slot,
    choose_with_quotas,
    rake,
    rake_weights,
    target_codes,
)
from synth_pipeline.modeling.mechanism import FitContext
from synth_pipeline.modeling.transforms import TableCodec
from synth_pipeline.thresholds import THRESHOLDS

log = logging.getLogger(__name__)


@contextmanager
def in_threads(threads: int):
    """A ``map`` over ``threads`` threads (in order; the plain one for a single thread), each
    computing with the models' fixed torch thread count, at most two results per thread
    ahead of the caller (each result is a chunk's matrix). numpy's global random state is
    left as it was (the transformer's inverse sets and restores it around each call)."""
    if threads <= 1:
        yield map
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from synth_pipeline.modeling.ctgan_model import COMPUTE_THREADS

    state = np.random.get_state()
    try:
        with ThreadPoolExecutor(threads, initializer=torch.set_num_threads, initargs=(COMPUTE_THREADS,)) as pool:
            def ordered(function, items):
                items, pending = iter(items), deque()
                for item in items:
                    pending.append(pool.submit(function, item))
                    if len(pending) >= 2 * threads:
                        yield pending.popleft().result()
                while pending:
                    yield pending.popleft().result()

            yield ordered
    finally:
        np.random.set_state(state)


class Progress:
    """Logs how many of ``total`` rows are generated, at most once per ``every`` seconds
    (nothing for work shorter than that): a table of millions of rows takes minutes."""

    def __init__(self, label: str, total: int, every: float = 30.0):
        self.label, self.total, self.every, self.done = label, total, every, 0
        self.started = self.logged = time.perf_counter()

    def add(self, part: pd.DataFrame) -> pd.DataFrame:
        self.done += len(part)
        now = time.perf_counter()
        if now - self.logged >= self.every and self.done < self.total:
            self.logged = now
            log.info("%s: %d of %d rows generated (%.0f rows/s)", self.label, self.done, self.total,
                     self.done / (now - self.started))
        return part


def stacked(parts) -> pd.DataFrame:
    """The rows of ``parts`` (data frames with the same columns) one after another, on a fresh
    range index, built a column at a time: each part's columns are copied out of it as it
    comes (the part is then let go), and each column's pieces are let go once joined. At
    most one column is held twice, where joining the parts at once holds the whole table twice."""
    pieces: dict[str, list[pd.Series]] = {}
    rows = 0
    for part in parts:
        rows += len(part)
        for name in part.columns:
            pieces.setdefault(name, []).append(part[name].reset_index(drop=True).copy())
        del part
    out = {}
    for name in list(pieces):
        column = pieces.pop(name)
        out[name] = column[0] if len(column) == 1 else pd.concat(column, ignore_index=True)
        del column
    return pd.DataFrame(out, copy=False) if out else pd.DataFrame(index=pd.RangeIndex(rows))


SAMPLE_CHUNK_ROWS = 25_000  # rows generated at once
SAMPLE_CHUNK_CANDIDATES = 250_000  # ... and at most this many candidate rows
PROBE_ROWS = 4000  # real rows (their contexts and parents) the candidate count is chosen on
PASS_LADDER = (1, 2, 3, 5, 8, 12)  # forward passes per row tried below the full count of candidates


@dataclass
class Generator:
    """The table's rows from a CTGAN given each row's parent context, raked among candidates
    to the real category shares (and pair shares)."""

    codec: TableCodec
    gan: ContextCTGAN
    targets: dict[str, pd.Series] = field(default_factory=dict)  # category -> real shares
    pair_joints: PairJoints | None = None
    # per output row where the table is large (None: the full count); drawn from ``passes`` forward
    # passes (None: one per candidate), so a few passes may give more candidates than the full count
    candidates: int | None = None
    passes: int | None = None
    name: ClassVar[str] = "generator"
    phase: ClassVar[str] = "generate"
    refit: ClassVar[bool] = False
    required: ClassVar[bool] = True
    switches: ClassVar[tuple[str, ...]] = ("parent_context", "raking", "pair_joints", "quotas")
    refit_switches: ClassVar[tuple[str, ...]] = ("parent_context",)
    needs: ClassVar[tuple[str, ...]] = ("derived", "conditionals", "sibling_spreads")

    @classmethod
    def fit(cls, context: FitContext) -> "Generator | None":
        modelled, training = context.modelled, context.training
        if not modelled or not len(context.rows):
            return None
        codec = TableCodec.fit(training, modelled)
        steps = context.settings.steps_for(len(context.rows))
        gan = ContextCTGAN(GanSettings(steps=steps, device=context.settings.device))
        given = f" given {context.primary.parent_table_name} ({context.context.shape[1]} context values)" \
            if context.context is not None else ""
        log.info("%s: fitting CTGAN on %d rows x %d columns%s, %d steps", context.table, len(context.rows),
                 len(modelled), given, steps)
        encoded = codec.encode(training)
        gan.fit(encoded, codec.discrete_columns, context=context.context, seed=context.seed, label=context.table)
        found = cls(codec, gan)
        if context.on("raking"):
            found.targets = category_targets(encoded, codec.discrete_columns)
        parent = (context.parent_rows, context.parent_kinds) if context.settings.conditional else (None, None)
        if context.on("pair_joints"):
            # numbers mapped per category afterwards are not binned as the GAN writes them: left out
            conditionals = context.found.get("conditionals")
            spreads = context.found.get("sibling_spreads")
            remapped = conditionals.columns if conditionals is not None else set()
            found.pair_joints = PairJoints.fit(encoded, list(codec.discrete_columns), [
                c.name for c in codec.columns if c.kind in ("numerical", "datetime") and not c.few_values
                and c.null_rate < 1 and c.name not in remapped], *parent,
                not_given=spreads.columns if spreads is not None else set())
        if found.targets and context.on("raking"):
            found.passes, found.candidates = found._fewest_passes(context)
            log.info("%s: %d candidates per row from %d forward passes meet the raking targets (as %d passes do)",
                     context.table, found.candidates, found.passes, found._full_candidates(lambda _: True))
        return found

    def _full_candidates(self, on) -> int:
        if not self.targets or not on("raking"):
            return 1
        return THRESHOLDS.pair_candidates_per_row if self.pair_joints is not None and on("pair_joints") \
            else THRESHOLDS.candidates_per_row

    def _fewest_passes(self, context: FitContext) -> tuple[int, int]:
        """The fewest forward passes of the generator per row, and the candidates drawn from
        them, with which raking meets every target (category shares, pair shares, shares
        given the parent) about as closely as with the full count of candidates, each from
        a pass of its own.

        A pass gives a row's scores; the categories (and numbers' modes) raking reads are
        drawn from them. Drawing them again from the same pass gives another candidate for
        a small fraction of a pass's cost (up to ``THRESHOLDS.draws_per_pass`` per pass),
        nearly as varied where the targets turn on categories. Probed on the contexts and
        parents of up to ``PROBE_ROWS`` real rows: the full count of passes is drawn once,
        each drawn ``draws_per_pass`` times; for each count of ``PASS_LADDER`` and of draws
        (fewest first), the first passes and draws are raked and each target's expected
        kept shares compared with its real ones (total variation), against one draw of every
        pass. Passes are most of the sampling cost, then the candidates raked."""
        full = self._full_candidates(lambda _: True)
        most = THRESHOLDS.draws_per_pass
        rows = len(context.rows)
        rng = np.random.default_rng(context.seed)
        probe = np.sort(rng.choice(rows, min(rows, PROBE_ROWS), replace=False))
        m = len(probe)
        ctx = None if context.context is None else context.context[probe]
        given = {p: codes[probe] for p, codes in self.pair_joints.given_codes(context.parent_rows).items()} \
            if self.pair_joints is not None and context.parent_rows is not None and context.settings.conditional else None
        drawn = self.gan.sample_candidates(m, ctx, context.seed + 1, full)
        picks = self.gan.picks(drawn.raw, self._read(self.pair_joints), drawn.generator, most)
        codes = self._codes(drawn.raw, picks, m, full * most, given, self.pair_joints)

        def miss(passes: int, draws: int) -> float:
            # draw r of pass f of slot i: r * full * m + f * m + i
            taken = (np.arange(draws)[:, None] * full * m + np.arange(passes * m)[None, :]).reshape(-1)
            sub = [(cell[taken], share, cells) for cell, share, cells in codes]
            weights = rake_weights(m, passes * draws, sub)
            return max(0.5 * np.abs(np.bincount(cell, weights=weights, minlength=cells) / m - share).sum()
                       for cell, share, cells in sub)

        best = miss(full, 1)
        for passes in (p for p in PASS_LADDER if p < full):
            for draws in range(1, min(most, -(-full // passes)) + 1):
                if miss(passes, draws) <= best + THRESHOLDS.candidates_tolerance:
                    return passes, passes * draws
        return full, full

    def _read(self, pairs: PairJoints | None) -> list[str]:
        """The columns raking reads."""
        return list(self.targets) + ([] if pairs is None else [c for c in pairs.numeric if c not in self.targets])

    @property
    def columns(self) -> set[str]:
        return {c.name for c in self.codec.columns}

    def fitted_switches(self) -> list[str]:
        """The switches of the parts this generator holds (raking needs category targets)."""
        return (["raking", "quotas"] if self.targets else []) + (["pair_joints"] if self.pair_joints is not None else [])

    @property
    def label(self) -> str:
        parts = [f"CTGAN over {len(self.codec.columns)} columns"]
        if self.pair_joints is not None:
            parts.append(self.pair_joints.label)
        return "; ".join(parts)

    def sample(self, n: int, seed: int, rng: np.random.Generator, context: np.ndarray | None,
               parents: pd.DataFrame | None, rows: np.ndarray | None, on, threads: int = 1,
               label: str = "rows") -> pd.DataFrame:
        """``n`` rows (given each row's parent row and its context), raked among candidates;
        on long work, progress is logged under ``label`` (the table's name).
        ``parents``, ``context``: the parent rows and their encoded context, one per parent;
        ``rows``: each output row's parent (a position in them).

        In chunks of rows (with their parents' context, taken a chunk at a time): the
        candidates, the transformer's matrices and the parents repeated per row are bounded
        by the chunk, not by the scale. Each chunk draws from its own
        generators (seeded from ``seed`` and ``rng``), so ``threads`` chunks can be drawn
        side by side (torch and numpy release the interpreter lock in their loops) with the
        same rows as one after another; they are decoded in order."""
        pairs = self.pair_joints if on("pair_joints") else None
        k = passes = self._full_candidates(on)
        if k > 1 and n > THRESHOLDS.quota_max_rows and self.candidates is not None and pairs is self.pair_joints:
            # a small table (quota draws) keeps every candidate, each from its own pass: it costs little
            k, passes = self.candidates, self.passes or self.candidates
        draws = k // passes
        chunk = max(1, min(SAMPLE_CHUNK_ROWS, SAMPLE_CHUNK_CANDIDATES // k))
        starts = range(0, max(n, 1), chunk)
        chunk_rngs = rng.spawn(len(starts))
        read = self._read(pairs)
        # the codes of the parents' values raking reads, taken by position a chunk at a time
        given = None if pairs is None or parents is None else pairs.given_codes(parents)
        first = Future()  # the first chunk's raking factors: every later chunk's raking starts from them

        def draw(i: int) -> np.ndarray:
            """Chunk ``i``'s rows in the transformer's encoding (activated)."""
            try:
                return drawn_chunk(i)
            except BaseException as error:
                if i == 0 and not first.done():  # the later chunks waiting for it fail with it
                    first.set_exception(error)
                raise

        def drawn_chunk(i: int) -> np.ndarray:
            start = starts[i]
            size = min(chunk, n - start)
            owners = None if rows is None else rows[start:start + size]
            ctx = None if context is None else context[owners]
            drawn = self.gan.sample_candidates(size, ctx, seed + i, passes, exact=k == 1)
            if k == 1:
                return self.gan.activate(drawn.raw, None, drawn.generator)
            # candidates are drawn as far as raking reads them (rounded); the kept ones completed
            picks = self.gan.picks(drawn.raw, read, drawn.generator, draws)
            slots = None if given is None else {p: codes[owners] for p, codes in given.items()}
            kept = self._rake(drawn.raw, picks, size, k, slots, pairs, chunk_rngs[i], on, first, i == 0)
            fixed = {c: p[kept] for c, p in picks.items()}
            return self.gan.activate(drawn.complete(kept % (passes * size)), fixed, drawn.generator)

        if n == 0:
            return self.codec.decode(self.gan.sample(0)).reset_index(drop=True)
        progress = Progress(label, n)
        with in_threads(min(threads, len(starts))) as map_:
            return stacked(progress.add(self.codec.decode(self.gan.decode(matrix)))
                           for matrix in map_(draw, range(len(starts))))

    def _rake(self, raw, picks: dict[str, np.ndarray], size: int, k: int, given: dict[int, np.ndarray] | None,
              pairs: PairJoints | None, rng: np.random.Generator, on, first: Future, is_first: bool) -> np.ndarray:
        """Which of the ``size * k`` candidates to keep (one per output row; ``given``: the codes of
        each one's parent, ``PairJoints.given_codes``). The first chunk rakes from even weights
        and hands its factors on (``first``); the others wait for them and start from them
        (``marginals.rake``): the same rows whatever the threads."""
        coded = self._codes(raw, picks, size, k, given, pairs)
        if is_first:
            weights, factors = rake(size, k, coded)
            first.set_result(factors)
        else:
            weights, _ = rake(size, k, coded, first.result())
        if size <= THRESHOLDS.quota_max_rows and on("quotas"):  # few rows: category counts held to the real shares
            candidates = pd.DataFrame({c: self.gan.category_labels(c)[picks[c]] for c in self.targets})
            return choose_with_quotas(weights, candidates, self.targets, size, k, rng)
        return choose_per_slot(weights, size, k, rng)

    def _codes(self, raw, picks: dict[str, np.ndarray], size: int, k: int, given: dict[int, np.ndarray] | None,
               pairs: PairJoints | None) -> list[tuple[np.ndarray, np.ndarray, int]]:
        """The raking targets over ``size * k`` candidates: (cell of each, real share of each
        cell, cells) per category column, pair, and column given the parent row."""
        labels = {c: self.gan.category_labels(c) for c in self.targets}
        coded = [target_codes(picks[c], labels[c], target) for c, target in self.targets.items()]
        if pairs is not None:
            numbers = self.gan.numbers(raw, pairs.numeric, picks)
            coded += pairs.rake_codes({**{c: (picks[c], labels[c]) for c in self.targets}, **numbers}, given, k)
        return coded

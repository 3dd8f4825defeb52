"""A CTGAN trained by a step budget, with an optional per-row context vector.

Built from the ``ctgan`` package's pieces (mode-specific normalisation in its
DataTransformer, its Generator/Discriminator layers, training-by-sampling through its
DataSampler). Two changes matter here:

* training runs for a fixed number of optimiser steps, so cost grows with the budget,
  not with the row count, and the transformer is fitted on a row sample;
* each row may carry a context vector (its encoded parent row). The generator gets
  noise + conditional vector + context, the discriminator sees row + conditional
  vector + context, so children are generated *given* their parent. With no context the
  model is a plain CTGAN.
"""

from __future__ import annotations

import functools
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from ctgan.data_sampler import DataSampler
from ctgan.data_transformer import DataTransformer
from ctgan.synthesizers.ctgan import Discriminator, Generator
from rdt.transformers.numerical import INTEGER_BOUNDS
from torch import optim
from torch.nn import functional

from synth_pipeline.errors import ConfigError, SynthPipelineError

log = logging.getLogger(__name__)
GUMBEL_TAU = 0.2  # temperature of the category spans' Gumbel softmax (ctgan's)


COMPUTE_THREADS = 1  # every model computes with this many threads, whatever the machine


@contextmanager
def fixed_threads(threads: int = COMPUTE_THREADS):
    """torch and the BLAS libraries (numpy, scikit-learn's mixtures) compute with ``threads``
    threads inside: the same seed gives the same numbers on a machine of any core count (a
    sum split over more threads rounds differently), and processes running side by side do
    not oversubscribe the cores (small models gain nothing from intra-op threads: the demo
    ran faster with one than with two). Parallelism comes from tables and partitions."""
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        torch.set_num_threads(before)


def with_fixed_threads(function):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with fixed_threads():
            return function(*args, **kwargs)

    return wrapper


@dataclass(frozen=True)
class GanSettings:
    steps: int = 300
    batch_size: int = 300
    embedding_dim: int = 64
    generator_dim: tuple[int, ...] = (128, 128)
    discriminator_dim: tuple[int, ...] = (128, 128)
    learning_rate: float = 1e-3
    pac: int = 10
    transformer_sample: int = 2000
    device: str = "cpu"


class _SyncTransformer(DataTransformer):
    """ctgan's DataTransformer without its joblib process pool (slower than serial here)."""

    def transform(self, raw_data: pd.DataFrame) -> np.ndarray:
        parts = self._synchronous_transform(raw_data, self._column_transform_info_list)
        return np.concatenate(parts, axis=1).astype("float32")


@dataclass
class TrainingLog:
    steps: int = 0
    seconds: float = 0.0
    generator_loss: list[float] = field(default_factory=list)
    discriminator_loss: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        g, d = self.generator_loss, self.discriminator_loss
        tail = max(1, len(g) // 10)
        return {
            "steps": self.steps, "seconds": round(self.seconds, 2),
            "steps_per_second": round(self.steps / self.seconds, 1) if self.seconds else 0.0,
            "generator_loss_first": round(float(np.mean(g[:tail])), 4) if g else 0.0,
            "generator_loss_last": round(float(np.mean(g[-tail:])), 4) if g else 0.0,
            "discriminator_loss_first": round(float(np.mean(d[:tail])), 4) if d else 0.0,
            "discriminator_loss_last": round(float(np.mean(d[-tail:])), 4) if d else 0.0,
        }


def resolve_device(requested: str) -> str:
    """The torch device for a ``device`` setting: ``auto`` is a CUDA (or Apple) GPU when torch
    sees one, else the CPU; a GPU asked for by name and not present is a clear error."""
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if requested == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if (requested.startswith("cuda") and not cuda) or (requested == "mps" and not mps):
        raise ConfigError(f"device '{requested}': torch {torch.__version__} sees no such GPU here "
                          "(set device: cpu, or auto to use a GPU only where there is one)")
    return requested


class ContextCTGAN:
    """Fit on a frame (+ optional context matrix), sample rows (given context rows)."""

    def __init__(self, settings: GanSettings = GanSettings()):
        self.settings = settings
        self.training = TrainingLog()

    # ------------------------------------------------------------------ fit
    def fit(self, data: pd.DataFrame, discrete_columns: list[str], context: np.ndarray | None = None,
            seed: int = 0, label: str = "") -> "ContextCTGAN":
        s = self.settings
        _seed_everything(seed)
        device = torch.device(resolve_device(s.device))
        log.info("%s: training on %s", label or "model", device)
        self.columns = list(data.columns)
        self.context_dim = 0 if context is None else context.shape[1]
        sample = data
        if len(data) > s.transformer_sample:
            # A row sample for the Gaussian mixtures, plus one row of every category so the
            # one-hot encoders know them all.
            firsts = [data.drop_duplicates(col) for col in discrete_columns]
            sample = pd.concat([data.sample(s.transformer_sample, random_state=seed), *firsts])
            sample = sample[~sample.index.duplicated()]
        self.transformer = _SyncTransformer()
        self.transformer.fit(sample, discrete_columns)
        train = self.transformer.transform(data)
        self.sampler = DataSampler(train, self.transformer.output_info_list, log_frequency=True)
        self._index_rows_by_category()
        self._category_probs = self._true_category_probs(train)
        data_dim = self.transformer.output_dimensions
        cond_dim = self.sampler.dim_cond_vec()
        self.generator = Generator(s.embedding_dim + cond_dim + self.context_dim, s.generator_dim, data_dim).to(device)
        discriminator = Discriminator(data_dim + cond_dim + self.context_dim, s.discriminator_dim, pac=s.pac).to(device)
        opt_g = optim.Adam(self.generator.parameters(), lr=s.learning_rate, betas=(0.5, 0.9), weight_decay=1e-6)
        opt_d = optim.Adam(discriminator.parameters(), lr=s.learning_rate, betas=(0.5, 0.9), weight_decay=1e-6)
        batch = max(s.pac, min(s.batch_size, len(train)) // s.pac * s.pac)
        ctx = None if context is None else torch.from_numpy(context.astype("float32")).to(device)
        train_t = torch.from_numpy(train).to(device)
        started, report_every = time.perf_counter(), max(1, s.steps // 5)
        self.training = TrainingLog()
        for step in range(s.steps):
            loss_d = self._discriminator_step(discriminator, opt_d, train_t, ctx, batch, device)
            loss_g = self._generator_step(discriminator, opt_g, train_t, ctx, batch, device)
            self.training.generator_loss.append(loss_g)
            self.training.discriminator_loss.append(loss_d)
            if (step + 1) % report_every == 0:
                elapsed = time.perf_counter() - started
                log.info("%s: step %d/%d, %.1f steps/s, loss G %.3f D %.3f", label or "model", step + 1, s.steps,
                         (step + 1) / elapsed, loss_g, loss_d)
        self.training.steps = s.steps
        del self._rows_flat, self._rows_start, self._rows_count  # training only: kept out of the pickle
        self.training.seconds = time.perf_counter() - started
        self.generator.eval()
        return self

    def _condition(self, batch: int, device):
        condvec = self.sampler.sample_condvec(batch)
        if condvec is None:
            return None, None, None, None
        c, m, col, opt = condvec
        return torch.from_numpy(c).to(device), torch.from_numpy(m).to(device), col, opt

    def _index_rows_by_category(self) -> None:
        """The rows of every (discrete column, category) as slices of one flat array, so a batch
        of conditions finds its real rows in one vectorised draw (ctgan's sampler loops per row)."""
        lists = self.sampler._rid_by_cat_cols
        widest = max((len(per) for per in lists), default=0)
        self._rows_start = np.zeros((len(lists), widest), dtype=np.int64)
        self._rows_count = np.zeros((len(lists), widest), dtype=np.int64)
        flat, position = [], 0
        for c, per in enumerate(lists):
            for o, rows in enumerate(per):
                self._rows_start[c, o], self._rows_count[c, o] = position, len(rows)
                flat.append(np.asarray(rows, dtype=np.int64))
                position += len(rows)
        self._rows_flat = np.concatenate(flat) if flat else np.zeros(0, dtype=np.int64)

    def _real_rows(self, train_t, batch, col, opt):
        """Row indices of real rows matching the sampled conditions (training by sampling)."""
        if col is None:
            return torch.from_numpy(np.random.randint(len(train_t), size=batch))
        count = self._rows_count[col, opt]
        pick = (np.random.random(len(col)) * count).astype(np.int64)
        return torch.from_numpy(self._rows_flat[self._rows_start[col, opt] + np.minimum(pick, count - 1)])

    def _fake(self, batch, c, ctx_rows, device):
        """(raw, activated) generated rows, for training."""
        z = torch.randn(batch, self.settings.embedding_dim, device=device)
        parts = [z] + [t for t in (c, ctx_rows) if t is not None]
        raw = self.generator(torch.cat(parts, dim=1))
        return raw, self._activate(raw)

    def _folded_layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The generator's layers as (weight transposed, bias), each residual block's
        batch-norm folded into its linear layer (the module is in evaluation mode after
        training: the norm is a fixed affine map)."""
        *blocks, last = list(self.generator.seq)
        layers = []
        for block in blocks:
            bn, fc = block.bn, block.fc
            if bn.training or bn.running_mean is None:
                raise SynthPipelineError("generator left in training mode: cannot fold its batch norm")
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            layers.append(((fc.weight * scale[:, None]).t().contiguous(), (fc.bias - bn.running_mean) * scale + bn.bias))
        layers.append((last.weight.t().contiguous(), last.bias))
        return layers

    def _generate(self, parts, layers, shared: torch.Tensor | None = None, k: int = 1, native: bool = True,
                  exact: bool = True) -> torch.Tensor:
        """The generator's forward pass for sampling, for ``k`` candidates of each slot (row
        ``j * slots + i`` is candidate ``j`` of slot ``i``): their raw output.
        ``parts``: each candidate's own input (noise, condition); ``shared``: each slot's
        context, which its candidates share, so its share of every layer is computed once
        per slot rather than per candidate. Each residual block's output is written in place
        of ctgan's concatenations (the same layout: ``[out_2, out_1, input]``), so a large
        sample does not copy its widening rows.

        The hidden rows (inputs and block outputs) are held in the type of the blocks'
        weights (bfloat16 when sampling, ``SAMPLE_HIDDEN``). The last layer computes in
        float32 where ``exact``, else in that type too (candidates only raking reads: the
        kept ones are completed in float32 by ``Candidates.complete``)."""
        *blocks, last = layers
        hidden = blocks[0][0].dtype if blocks else torch.float32
        width = sum(p.shape[1] for p in parts)
        rows = torch.empty(parts[0].shape[0], width + sum(w.shape[1] for w, _ in blocks), device=parts[0].device,
                           dtype=hidden)
        start = rows.shape[1] - width
        for p in parts:
            rows[:, start:start + p.shape[1]] = p
            start += p.shape[1]
        start = rows.shape[1] - width
        for weight, bias in blocks:
            size = weight.shape[1]
            rows[:, start - size:start] = torch.relu_(_layer(weight, bias, rows[:, start:], shared, k, native))
            start -= size
        return self._last(last, rows, shared, k, native, exact)

    @staticmethod
    def _last(last, rows: torch.Tensor, shared: torch.Tensor | None, k: int, native: bool,
              exact: bool = True) -> torch.Tensor:
        """The generator's last layer on hidden ``rows``, as float32: computed in float32 where
        ``exact``, else in the rows' type (rounded: enough for picks and raking)."""
        weight, bias = last
        if exact or rows.dtype == torch.float32:
            return _layer(weight, bias, rows.to(torch.float32), shared, k, native)
        return _layer(weight.to(rows.dtype), bias.to(rows.dtype), rows, shared, k, native).to(torch.float32)

    def _discriminator_step(self, disc, opt, train_t, ctx, batch, device) -> float:
        c, _, col, opt_ = self._condition(batch, device)
        perm = np.random.permutation(batch)
        real_idx = self._real_rows(train_t, batch, None if col is None else col[perm], None if opt_ is None else opt_[perm])
        # Fake rows are generated for the same contexts as the real rows they are compared with.
        ctx_rows = None if ctx is None else ctx[real_idx]
        c_fake = None if c is None else c[perm]
        _, fake = self._fake(batch, c_fake, ctx_rows, device)
        real = train_t[real_idx]
        extra = [t for t in (c_fake, ctx_rows) if t is not None]
        real_cat, fake_cat = torch.cat([real, *extra], dim=1), torch.cat([fake, *extra], dim=1)
        pen = disc.calc_gradient_penalty(real_cat, fake_cat, device, self.settings.pac)
        loss = -(torch.mean(disc(real_cat)) - torch.mean(disc(fake_cat)))
        opt.zero_grad(set_to_none=False)
        pen.backward(retain_graph=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    def _generator_step(self, disc, opt, train_t, ctx, batch, device) -> float:
        c, m, col, opt_ = self._condition(batch, device)
        ctx_rows = None
        if ctx is not None:
            ctx_rows = ctx[self._real_rows(train_t, batch, col, opt_)]
        raw, fake = self._fake(batch, c, ctx_rows, device)
        extra = [t for t in (c, ctx_rows) if t is not None]
        y_fake = disc(torch.cat([fake, *extra], dim=1))
        cross_entropy = 0 if c is None else self._cond_loss(raw, c, m)
        loss = -torch.mean(y_fake) + cross_entropy
        opt.zero_grad(set_to_none=False)
        loss.backward()
        opt.step()
        return float(loss.detach())

    # --------------------------------------------------------------- sample
    def sample(self, n: int, context: np.ndarray | None = None, seed: int = 0) -> pd.DataFrame:
        if n == 0:
            return pd.DataFrame({c: pd.Series(dtype=self.transformer._column_raw_dtypes[c]) for c in self.columns})
        return self.decode(self.sample_matrix(n, context, seed))

    def decode(self, matrix: np.ndarray) -> pd.DataFrame:
        """Generated matrix rows as the frame the model learned (the transformer's inverse)."""
        return self.transformer.inverse_transform(matrix)

    def spans(self) -> dict[str, tuple[int, int, str]]:
        """Each column's (start, width, type) in the transformer's encoding: a category's
        one-hot span, or a number's value followed by its mode span."""
        out, st = {}, 0
        for info in self.transformer._column_transform_info_list:
            out[info.column_name] = (st, info.output_dimensions, info.column_type)
            st += info.output_dimensions
        return out

    def category_labels(self, column: str) -> np.ndarray:
        """A category column's labels, as text, in the order of its one-hot span."""
        info = next(i for i in self.transformer._column_transform_info_list if i.column_name == column)
        return np.asarray(info.transform.dummies, dtype=object).astype(str)

    @torch.no_grad()
    def picks(self, raw: torch.Tensor, columns: list[str], generator: torch.Generator,
              draws: int = 1) -> dict[str, np.ndarray]:
        """For each named column, the index its hard activation picks in every generated row:
        a category's label index, or a number's mode. Candidates are drawn this far only (the
        costly one-hot rows of what raking does not read are never built); ``activate`` then
        completes the kept rows with these picks. ``generator``: where the draws come from
        (the candidates' own). ``draws``: picks drawn from each row's softmax, each a
        candidate of its own (draw ``r`` of row ``j`` at ``r * len(raw) + j``): a draw costs
        a small fraction of the pass that gave the row."""
        spans = self.spans()
        out = {}
        for column in columns:
            st, dim, kind = spans[column]
            if kind == "continuous":
                st, dim = st + 1, dim - 1
            out[column] = _softmax_pick(raw[:, st:st + dim], generator, draws).numpy()
        return out

    def numbers(self, raw: torch.Tensor, columns: list[str], picks: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The value of each named number column in generated rows, from its mode pick (picks
        drawn several times from each row: ``picks``' draws of ``raw`` one after another)."""
        spans, out = self.spans(), {}
        for info in self.transformer._column_transform_info_list:
            if info.column_name not in columns:
                continue
            st, dim, _ = spans[info.column_name]
            pick = picks[info.column_name]
            normalized = np.tile(torch.tanh(raw[:, st]).numpy(), len(pick) // len(raw))
            values = _mode_values(info.transform, normalized, pick)
            if values is None:  # the transformer's own inverse (its missing values, an extension dtype)
                block = np.zeros((len(pick), dim), dtype="float32")
                block[:, 0] = normalized
                block[np.arange(len(pick)), 1 + pick] = 1.0
                values = self.transformer._inverse_transform_continuous(info, block, None, st)
            out[info.column_name] = np.asarray(values, dtype=float).reshape(-1)
        return out

    @torch.no_grad()
    def sample_matrix(self, n: int, context: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
        """``n`` generated rows in the transformer's encoding (see ``decode``)."""
        drawn = self.sample_candidates(n, context, seed, exact=True)
        return self.activate(drawn.raw, None, drawn.generator)

    @torch.no_grad()
    def sample_raw(self, n: int, context: np.ndarray | None = None, seed: int = 0, k: int = 1) -> torch.Tensor:
        """``k`` generated candidates for each of ``n`` rows (given each row's ``context``),
        before their activation (``activate``; ``picks``): row ``j * n + i`` is candidate
        ``j`` of row ``i``."""
        return self.sample_candidates(n, context, seed, k, exact=True).raw

    @torch.no_grad()
    def sample_candidates(self, n: int, context: np.ndarray | None = None, seed: int = 0, k: int = 1,
                          exact: bool = False) -> "Candidates":
        """Like ``sample_raw``, keeping each candidate's input: the raw output is rounded
        (bfloat16) unless ``exact``, and ``Candidates.complete`` computes the kept
        candidates' output in float32. The draws come from the candidates' own generators,
        seeded with ``seed`` (``Candidates.generator`` continues them: picks, activation), so
        chunks sampled side by side in threads give what they give one after another."""
        generator = torch.Generator().manual_seed(seed)
        conditions = np.random.RandomState(seed % (2**32))
        try:  # a model trained on a GPU samples on the CPU where no GPU is
            device = torch.device(resolve_device(self.settings.device))
        except ConfigError:
            device = torch.device("cpu")
        self.generator.to(device)
        *blocks, last = [(w.to(device), b.to(device)) for w, b in self._folded_layers()]
        layers = [(w.to(SAMPLE_HIDDEN), b.to(SAMPLE_HIDDEN)) for w, b in blocks] + [last]
        native = native_bfloat16(device)
        given = None if context is None else torch.from_numpy(np.asarray(context, dtype="float32")).to(device)
        out = torch.empty(k, n, self.transformer.output_dimensions)
        inputs = []
        step = max(1, 32768 // k)
        for start in range(0, n, step):
            size = min(step, n - start)
            parts = [torch.randn(size * k, self.settings.embedding_dim, generator=generator).to(device)]
            c = self._sample_condition(size * k, device, conditions)
            if c is not None:
                parts.append(c)
            x = torch.cat(parts, dim=1).to(SAMPLE_HIDDEN)
            shared = None if given is None else given[start:start + size]
            out[:, start:start + size] = self._generate([x], layers, shared, k, native, exact).view(k, size, -1).cpu()
            inputs.append(x)
        return Candidates(self, out.view(k * n, -1), inputs, step, given, layers, native, generator)

    @torch.no_grad()
    def activate(self, raw: torch.Tensor, fixed: dict[str, np.ndarray] | None,
                 generator: torch.Generator) -> np.ndarray:
        """Generated rows as the transformer encodes them: tanh on the numbers, and each
        category and mode span one-hot at its Gumbel-max pick (the pick ctgan's Gumbel softmax
        decodes to, without the softmax); ``fixed``: the picks of some columns, already drawn;
        ``generator``: where the other picks are drawn from (the candidates' own)."""
        fixed = fixed or {}
        out, st = torch.zeros_like(raw), 0
        rows = torch.arange(len(raw))
        for info, spans in zip(self.transformer._column_transform_info_list, self.transformer.output_info_list):
            for span in spans:
                ed = st + span.dim
                if span.activation_fn == "tanh":
                    out[:, st:ed] = torch.tanh(raw[:, st:ed])
                else:
                    given = fixed.get(info.column_name)
                    pick = _softmax_pick(raw[:, st:ed], generator) if given is None else torch.from_numpy(given)
                    out[rows, st + pick] = 1.0
                st = ed
        return out.numpy()

    def _sample_condition(self, n: int, device, rng: np.random.RandomState):
        """Condition on one discrete column, its category drawn at its *real* frequency."""
        if self.sampler.dim_cond_vec() == 0:
            return None
        cond = np.zeros((n, self.sampler.dim_cond_vec()), dtype="float32")
        cols = rng.randint(len(self._category_probs), size=n)
        for j, (offset, probs) in enumerate(self._category_probs):
            rows = np.nonzero(cols == j)[0]
            cond[rows, offset + rng.choice(len(probs), size=len(rows), p=probs)] = 1
        return torch.from_numpy(cond).to(device)

    def _true_category_probs(self, train: np.ndarray) -> list[tuple[int, np.ndarray]]:
        out, st, cond_st = [], 0, 0
        for info in self.transformer.output_info_list:
            dim = sum(span.dim for span in info)
            if len(info) == 1 and info[0].activation_fn == "softmax":
                freq = train[:, st:st + dim].sum(axis=0)
                out.append((cond_st, freq / freq.sum()))
                cond_st += dim
            st += dim
        return out

    # ------------------------------------------------------------- ctgan math
    def _activate(self, data):
        """tanh on the numbers, Gumbel softmax (``GUMBEL_TAU``) on the category and mode spans."""
        parts, st = [], 0
        for info in self.transformer.output_info_list:
            for span in info:
                ed = st + span.dim
                if span.activation_fn == "tanh":
                    parts.append(torch.tanh(data[:, st:ed]))
                else:
                    parts.append(functional.gumbel_softmax(data[:, st:ed], tau=GUMBEL_TAU))
                st = ed
        return torch.cat(parts, dim=1)

    def _cond_loss(self, data, c, m):
        losses, st, st_c = [], 0, 0
        for info in self.transformer.output_info_list:
            if len(info) != 1 or info[0].activation_fn != "softmax":
                st += sum(span.dim for span in info)
                continue
            ed, ed_c = st + info[0].dim, st_c + info[0].dim
            losses.append(functional.cross_entropy(data[:, st:ed], torch.argmax(c[:, st_c:ed_c], dim=1), reduction="none"))
            st, st_c = ed, ed_c
        return (torch.stack(losses, dim=1) * m).sum() / data.size()[0]


def _layer(weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor, shared: torch.Tensor | None, k: int,
           native: bool) -> torch.Tensor:
    """One linear layer of the sampling pass, in ``x``'s type. ``shared``: each slot's context,
    whose weights are the layer's last rows, multiplied once per slot for its ``k``
    candidates. Where bfloat16 is not ``native``, its rounded values are multiplied in
    float32 and the result rounded once, as the bfloat16 kernel rounds its float32 sums.

    ``x`` may be a view of wider rows (``_generate``'s layout): the native bfloat16 kernel
    (torch 2.13, AMX CPUs) reads past a strided view's columns, so a NaN left in the memory
    beside them turned whole generated rows into NaN, differently from run to run; it is
    given a contiguous copy."""
    def mm(a, w, b=None):
        if native or a.dtype == torch.float32:
            a = a.contiguous()
            return torch.mm(a, w) if b is None else torch.addmm(b, a, w)
        wide = torch.float32
        out = torch.mm(a.to(wide), w.to(wide)) if b is None else torch.addmm(b.to(wide), a.to(wide), w.to(wide))
        return out.to(a.dtype)

    if shared is None:
        return mm(x, weight, bias)
    given = shared.shape[1]
    out = mm(x, weight[:-given])
    out.view(k, -1, out.shape[1]).add_(mm(shared.to(x.dtype), weight[-given:], bias))
    return out


SAMPLE_HIDDEN = torch.bfloat16  # the generator's hidden layers when sampling (see ``native_bfloat16``)


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bfloat16 matrices natively (a CUDA GPU; a CPU with
    AVX-512 BF16 or AMX instructions). Sampling holds the generator's hidden layers in
    bfloat16 everywhere: where it is native the multiplications run several times faster
    than in float32; elsewhere the same rounded values are multiplied in float32, so the
    same seed gives the same rows (up to the order of float32 sums) on any machine."""
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    cpu = torch.cpu
    return any(getattr(cpu, name, lambda: False)() for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


@dataclass
class Candidates:
    """Generated rows, ``k`` forward passes per slot (``raw``: row ``j * slots + i`` is pass
    ``j`` of slot ``i``; each a candidate, or several where ``picks`` draws it again),
    with what completing the kept ones needs: each pass's input (noise and condition,
    drawn ``step`` slots at a time) and the slots' context."""

    gan: "ContextCTGAN"
    raw: torch.Tensor
    inputs: list[torch.Tensor]
    step: int
    context: torch.Tensor | None
    layers: list[tuple[torch.Tensor, torch.Tensor]]
    native: bool
    generator: torch.Generator  # the draws' generator, continued by picks and activation

    @torch.no_grad()
    def complete(self, kept: np.ndarray) -> torch.Tensor:
        """The raw output of the ``kept`` candidates (one per slot, in slot order), its last
        layer in float32: the generator run again on their inputs only."""
        slots = len(kept)
        k = len(self.raw) // slots
        out = []
        for s, x in enumerate(self.inputs):
            start = s * self.step
            size = len(x) // k
            local = (kept[start:start + size] // slots) * size + np.arange(size)  # candidate j of slot i: j * size + i
            shared = None if self.context is None else self.context[start:start + size]
            out.append(self.gan._generate([x[torch.from_numpy(local)]], self.layers, shared, 1, self.native).cpu())
        return torch.cat(out) if len(out) > 1 else out[0]


def _mode_values(normalizer, normalized: np.ndarray, pick: np.ndarray) -> np.ndarray | None:
    """What rdt's ``ClusterBasedNormalizer.reverse_transform`` gives for these normalized values
    (float32, as the generator's activation writes them) in these modes, computed on the arrays
    (the transformer goes through data frames: about an eighth of the line items' sampling);
    None where it would do more than this (a column with missing values, an extension dtype)."""
    nulls = normalizer.null_transformer
    dtype = normalizer._dtype
    if (nulls is not None and nulls.nulls) or pd.api.types.is_extension_array_dtype(dtype):
        return None
    valid = normalizer.valid_component_indicator
    means = normalizer._bgm_transformer.means_.reshape([-1])[valid]
    stds = np.sqrt(normalizer._bgm_transformer.covariances_).reshape([-1])[valid]
    component = np.clip(pick.astype(int), 0, int(valid.sum()) - 1)
    values = np.clip(normalized.astype(np.float64), -1, 1) * normalizer.STD_MULTIPLIER * stds[component] \
        + means[component]
    if normalizer.enforce_min_max_values:
        values = values.clip(normalizer._min_value, normalizer._max_value)
    elif not normalizer.computer_representation.startswith("Float"):
        values = values.clip(*INTEGER_BOUNDS[normalizer.computer_representation])
    if normalizer.learn_rounding_scheme and normalizer._rounding_digits is not None:
        values = values.round(normalizer._rounding_digits)
    elif pd.api.types.is_integer_dtype(dtype):
        values = values.round(0)
    return values.astype(dtype)


def _softmax_pick(logits: torch.Tensor, generator: torch.Generator, draws: int = 1) -> torch.Tensor:
    """Each row's draw from the softmax of a span: what the Gumbel-max pick of ctgan's Gumbel
    softmax draws (the temperature does not move an argmax), drawn by the inverse of the
    cumulative softmax with one uniform number per row rather than one noise per cell (2-5x
    faster on spans of 10-30 cells). ``draws``: that many draws of each row, draw ``r`` of
    row ``j`` at ``r * len(logits) + j``."""
    weights = torch.exp(logits - logits.max(dim=1, keepdim=True).values).cumsum_(dim=1)
    u = torch.rand(len(logits), draws, dtype=weights.dtype, generator=generator).to(weights.device) * weights[:, -1:]
    return torch.searchsorted(weights, u).clamp_(max=logits.shape[1] - 1).t().reshape(-1)


def _seed_everything(seed: int) -> None:
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)

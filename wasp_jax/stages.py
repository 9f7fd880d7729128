"""The WASP stages as plain functions with explicit inputs and outputs (ALGORITHM 2.1-2.10).

The runner (`wasp_jax.runner`) strings these together and is the only place that touches
checkpoints. Privacy hygiene: private texts, their embeddings and everything computed from
them before the noise enter `noisy_votes` as arguments and never leave it; what comes back
(`NoisyRelease`) holds only post-noise histograms. Every later stage (selection, PLM weights,
prompts, generation) is post-processing of those and of public synthetic text.

Randomness: JAX keys for generation (one stream) and DP noise (another), and
`np.random.Generator`s seeded from (seed, stream, round, ...) for host-side choices, so a
stage re-run after a crash draws exactly what the first run drew.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence

import jax
import numpy as np

from wasp_jax import prompts as P
from wasp_jax.config import WaspConfig
from wasp_jax.tasks import TaskSpec

log = logging.getLogger("wasp_jax")

#: Host-rng stream ids (mixed into np.random.default_rng seeds).
HOST_STREAMS = {"data": 1, "prompts": 2, "generate": 3, "split": 4, "style": 5, "control": 6}


def host_rng(seed: int, stream: str, *ids: int) -> np.random.Generator:
    """A host generator for (run seed, named stream, round/plm/class ids)."""
    return np.random.default_rng([seed, HOST_STREAMS[stream], *ids])


# ----------------------------------------------------------------------------- population


@dataclasses.dataclass
class Population:
    """The accumulated synthetic set (public data), in insertion order.

    Attributes:
        texts, labels, plm, rounds: per-sample text, class id, PLM index and the round that
            generated it (0 = zero-shot start).
    """

    texts: list[str] = dataclasses.field(default_factory=list)
    labels: list[int] = dataclasses.field(default_factory=list)
    plm: list[int] = dataclasses.field(default_factory=list)
    rounds: list[int] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)

    def extend(self, texts: Sequence[str], label: int, plm: int, round_: int) -> None:
        self.texts.extend(texts)
        self.labels.extend([label] * len(texts))
        self.plm.extend([plm] * len(texts))
        self.rounds.extend([round_] * len(texts))

    def seen(self) -> set[str]:
        return {P.normalize(t) for t in self.texts}

    def to_state(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_state(cls, d: dict) -> Population:
        return cls(**{k: list(v) for k, v in d.items()})

    def rows(self, task: TaskSpec, plm_names: Sequence[str]) -> list[dict]:
        """synthetic.jsonl rows: text, label, label_name, plm, round."""
        return [
            {
                "text": t,
                "label": int(y),
                "label_name": task.labels[y],
                "plm": plm_names[k],
                "round": int(r),
            }
            for t, y, k, r in zip(self.texts, self.labels, self.plm, self.rounds)
        ]

    def class_counts(self, num_classes: int) -> list[int]:
        return np.bincount(np.asarray(self.labels, np.int64), minlength=num_classes).tolist()


# ----------------------------------------------------------------------------- budgets


def split_evenly(total: int, parts: int, offset: int = 0) -> list[int]:
    """`total` split into `parts` integers differing by at most one; the +1s rotate by offset."""
    base, rem = divmod(total, parts)
    return [base + (1 if (i - offset) % parts < rem else 0) for i in range(parts)]


def largest_remainder(shares: np.ndarray, total: int) -> list[int]:
    """Integer allocation of `total` proportional to `shares` (largest-remainder rounding)."""
    from wasp_jax.allocation import allocate_budget

    return [int(x) for x in allocate_budget(np.asarray(shares, np.float64), int(total))]


# ----------------------------------------------------------------------------- generation


@dataclasses.dataclass
class GenResult:
    """Texts kept for one (PLM, class) quota, plus how many could not be produced."""

    texts: list[str]
    shortfall: int
    calls: int


def decoding(cfg: WaspConfig, task: TaskSpec) -> dict:
    g = cfg.generation
    max_new = g.max_new_tokens if g.max_new_tokens is not None else task.max_new_tokens
    min_new = g.min_new_tokens if g.min_new_tokens is not None else task.min_new_tokens
    return dict(
        max_new_tokens=max_new,
        min_new_tokens=min(min_new, max_new),
        temperature=g.temperature,
        top_p=g.top_p,
        top_k=g.top_k,
        stop=task.stop,
    )


Variants = Sequence[str] | Callable[[int, int, np.random.Generator], list[str]]


def generate_quotas(
    generator,
    variants: Sequence[Variants],
    quotas: Sequence[int],
    *,
    cfg: WaspConfig,
    task: TaskSpec,
    key: jax.Array,
    rng: np.random.Generator,
    seen: set[str],
    progress: bool = False,
) -> list[GenResult]:
    """Generates `quotas[c]` clean, new samples of every class c (ALGORITHM 2.9, corrected).

    Each attempt makes ONE `generate` call for all classes still short: for class c it adds
    ceil(missing_c / batch_size) chunks, each one prompt drawn at random from `variants[c]`
    with `batch_size` continuations; or, when `variants[c]` is a callable
    `(attempt, rows, rng) -> prompts`, `rows` = chunks x batch_size prompts with one
    continuation each. The shapes are the same every time, so they compile once; surplus
    continuations are discarded. Continuations are cleaned (`prompts.clean_generation`) and
    de-duplicated against `seen` (updated). Missing samples are generated again, up to
    `generation.max_attempts` attempts; what is still missing is the class's `shortfall`
    (never padded by repetition). All classes must use the same kind of `variants`.
    """
    dec = decoding(cfg, task)
    bs = cfg.generation.batch_size
    kept: list[list[str]] = [[] for _ in quotas]
    calls = 0
    for attempt in range(cfg.generation.max_attempts):
        owners, prompts, built = [], [], False
        for c, n in enumerate(quotas):
            missing = n - len(kept[c])
            if missing <= 0:
                continue
            chunks = math.ceil(missing / bs)
            if callable(variants[c]):
                built = True
                new = variants[c](attempt, chunks * bs, rng)
            else:
                new = [variants[c][i] for i in rng.integers(len(variants[c]), size=chunks)]
            prompts += new
            owners += [c] * len(new)
        if not prompts:
            break
        outs = generator.generate(
            prompts,
            num_samples=1 if built else bs,
            key=jax.random.fold_in(key, attempt),
            progress=progress,
            **dec,
        )
        calls += 1
        for c, row in zip(owners, outs):
            for text in row:
                clean = P.clean_generation(text, min_words=task.min_words, max_words=task.max_words)
                if clean is None or P.normalize(clean) in seen or len(kept[c]) >= quotas[c]:
                    continue
                seen.add(P.normalize(clean))
                kept[c].append(clean)
    return [GenResult(kept[c], quotas[c] - len(kept[c]), calls) for c in range(len(quotas))]


def zero_shot_variants(generator, task: TaskSpec, label: int, cfg: WaspConfig, key: jax.Array):
    """A prompt builder for `generate_quota` implementing the ZeroGen prompts (ALGORITHM 2.1).

    With a two-stage task (a `subject_prompt`, e.g. a movie title) every sample gets its own
    sampled subject, then a prompt for a review of that subject; otherwise the one-stage
    prompt.
    """
    if not task.subject_prompt:
        return [P.zero_shot_prompt(task, label)]

    def build(attempt: int, rows: int, rng: np.random.Generator) -> list[str]:
        subjects = generator.generate(
            [task.subject_prompt],
            num_samples=rows,
            max_new_tokens=task.subject_max_new_tokens,
            temperature=cfg.generation.temperature,
            top_p=cfg.generation.top_p,
            stop=('"', "\n"),
            key=jax.random.fold_in(jax.random.fold_in(key, 1_000_003), attempt),
        )[0]
        return [P.zero_shot_prompt(task, label, s.strip() or None) for s in subjects]

    return build


# ----------------------------------------------------------------------------- private data


def load_private(cfg: WaspConfig, task: TaskSpec) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Reads, subsamples and party-splits the private data (never logged or written).

    Returns:
        (texts, labels (M,) int32, party (M,) int32).

    Raises:
        wasp_jax.data.DataError: unreadable file, bad records, labels outside the task.
    """
    from wasp_jax import data as data_io

    path = cfg.data.private_path
    if not path:
        raise data_io.DataError(
            f"method {cfg.method!r} needs private data: set data.private_path to a JSONL file"
        )
    rows = data_io.read_labeled_jsonl(
        path,
        label_names=task.labels,
        what="private",
        label_field=task.label_field,
        label_offset=task.label_offset,
    )
    rng = host_rng(cfg.seed, "data")
    labels = np.array([r["label"] for r in rows], np.int32)
    keep = np.arange(len(rows))
    if cfg.data.class_skew_alpha > 0:
        keep = _dirichlet_subsample(labels, task.num_classes, cfg.data.class_skew_alpha, rng)
    if cfg.data.num_private:
        keep = keep[: cfg.data.num_private]
    texts = [rows[i]["text"] for i in keep]
    labels = labels[keep]
    data_io.warn_missing_classes([{"label": y} for y in labels], task.labels)
    party = split_parties(labels, cfg.data.num_parties, cfg.data.party_alpha, rng)
    return texts, labels, party


def _dirichlet_subsample(labels, num_classes, alpha, rng) -> np.ndarray:
    """Indices whose class proportions follow one Dirichlet(alpha) draw (ALGORITHM 5.1)."""
    props = rng.dirichlet(np.full(num_classes, alpha))
    counts = np.bincount(labels, minlength=num_classes)
    total = int(min(counts[c] / max(props[c], 1e-12) for c in range(num_classes)))
    want = largest_remainder(props, min(total, len(labels)))
    picks = [rng.permutation(np.flatnonzero(labels == c))[: want[c]] for c in range(num_classes)]
    return rng.permutation(np.concatenate(picks)).astype(np.int64)


def split_parties(labels: np.ndarray, num_parties: int, alpha: float, rng) -> np.ndarray:
    """Party id per private sample: an even random split, or per class Dirichlet(alpha)."""
    party = np.zeros(len(labels), np.int32)
    if num_parties == 1:
        return party
    if alpha <= 0:
        party[rng.permutation(len(labels))] = np.arange(len(labels)) % num_parties
        return party
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        counts = largest_remainder(rng.dirichlet(np.full(num_parties, alpha)), len(idx))
        party[idx] = np.repeat(np.arange(num_parties), counts)
    return party

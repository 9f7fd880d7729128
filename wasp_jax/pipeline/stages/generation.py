"""Generation of one PLM's quotas: decoding settings, retries, cleaning and de-duplication.

`generate_quotas` turns per-class prompt variants into exactly-counted, cleaned, new samples
(docs/method.md §2.9); `zero_shot_variants` builds the round-0 prompts (§2.1).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import jax
import numpy as np

from wasp_jax.config import GenerationConfig
from wasp_jax.pipeline.stages import prompts as prompt_text
from wasp_jax.pipeline.stages.filters import TextFilter
from wasp_jax.tasks import TaskSpec


@dataclasses.dataclass
class GenResult:
    """Texts kept for one (PLM, class) quota, plus how many could not be produced."""

    texts: list[str]
    shortfall: int
    calls: int
    filtered: dict[str, int] = dataclasses.field(default_factory=dict)


def decoding(g: GenerationConfig, task: TaskSpec) -> dict:
    """Decoding arguments of `generate`: the config's, or the task's where the config is unset."""
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


def task_overrides(g: GenerationConfig, task: TaskSpec) -> list[str]:
    """One line per config value that replaces the task's own setting (task < config < --set)."""
    out = []
    for name in ("min_new_tokens", "max_new_tokens"):
        mine, theirs = getattr(g, name), getattr(task, name)
        if mine is not None and mine != theirs:
            out.append(
                f"generation.{name}={mine} overrides the task's {name}={theirs} "
                f"(--set generation.{name}=none keeps the task's)"
            )
    return out


Variants = Sequence[str] | Callable[[int, int, np.random.Generator], list[str]]


def generate_quotas(
    generator,
    variants: Sequence[Variants],
    quotas: Sequence[int],
    *,
    generation: GenerationConfig,
    task: TaskSpec,
    key: jax.Array,
    rng: np.random.Generator,
    seen: set[str],
    progress: bool = False,
) -> list[GenResult]:
    """Generates `quotas[c]` clean, new samples of every class c (docs/method.md §2.9).

    Each attempt makes ONE `generate` call for all classes still short: for class c it adds
    ceil(missing_c / batch_size) chunks, each one prompt drawn at random from `variants[c]`
    with `batch_size` continuations; or, when `variants[c]` is a callable
    `(attempt, rows, rng) -> prompts`, `rows` = chunks x batch_size prompts with one
    continuation each. The shapes are the same every time, so they compile once; surplus
    continuations are discarded. Continuations pass the counted filters of
    `wasp_jax.pipeline.stages.filters` (cleaning, length, prompt leaks, exact and near duplicates
    against `seen`, which is updated). Missing samples are generated again, up to
    `generation.max_attempts` attempts; what is still missing is the class's `shortfall`
    (never padded by repetition). All classes must use the same kind of `variants`.
    """
    dec = decoding(generation, task)
    bs = generation.batch_size
    kept: list[list[str]] = [[] for _ in quotas]
    filters = [TextFilter(task, seen) for _ in quotas]  # one shared `seen`, counts per class
    for f in filters[1:]:
        f.seen_near = filters[0].seen_near
    calls = 0
    for attempt in range(generation.max_attempts):
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
                if len(kept[c]) >= quotas[c]:
                    break  # surplus continuations of a full quota are not judged
                clean = filters[c].keep(text)
                if clean is not None:
                    kept[c].append(clean)
    return [
        GenResult(kept[c], quotas[c] - len(kept[c]), calls, dict(filters[c].counts))
        for c in range(len(quotas))
    ]


def zero_shot_variants(
    generator, task: TaskSpec, label: int, generation: GenerationConfig, key: jax.Array
):
    """A prompt builder for `generate_quotas` implementing the zero-shot prompts (§2.1).

    With a two-stage task (a `subject_prompt`, e.g. a movie title) every sample gets its own
    sampled subject, then a prompt for a review of that subject; otherwise the one-stage
    prompt.
    """
    if not task.subject_prompt:
        return [prompt_text.zero_shot_prompt(task, label)]

    def build(attempt: int, rows: int, rng: np.random.Generator) -> list[str]:
        subjects = generator.generate(
            [task.subject_prompt],
            num_samples=rows,
            max_new_tokens=task.subject_max_new_tokens,
            temperature=generation.temperature,
            top_p=generation.top_p,
            stop=('"', "\n"),
            key=jax.random.fold_in(jax.random.fold_in(key, 1_000_003), attempt),
        )[0]
        return [prompt_text.zero_shot_prompt(task, label, s.strip() or None) for s in subjects]

    return build

"""Prompt construction and post-processing of generations (docs/method.md §2.1, §2.8, §2.9, §4).

Everything here is host-side string work on PUBLIC inputs: task templates and synthetic
samples chosen from post-noise votes. Templates are filled by plain substitution of
`{label_word}`, `{subject}`, `{style}` and `{sample}`, so braces inside sample texts are kept
as they are (the original stripped them because it used `str.format`).

Randomness (which examples go into which variant, their order) comes from an explicit
`np.random.Generator`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from wasp_jax.pipeline.run.keys import host_rng
from wasp_jax.tasks import TaskSpec

_WS = re.compile(r"\s+")


def fill(template: str, **values: str) -> str:
    """Substitutes `{name}` placeholders without interpreting other braces."""
    for name, value in values.items():
        template = template.replace("{" + name + "}", value)
    return template


def zero_shot_prompt(task: TaskSpec, label: int, subject: str | None = None) -> str:
    """The ZeroGen-style prompt for class `label` (two-stage when a subject is given)."""
    word = task.label_words[label]
    if subject:
        return fill(task.zero_shot_prompt, label_word=word, subject=subject)
    if "{subject}" in task.zero_shot_prompt:
        return fill(task.zero_shot_prompt_without_subject, label_word=word)
    return fill(task.zero_shot_prompt, label_word=word)


def _pick(texts: Sequence[str], k: int, rng: np.random.Generator) -> list[str]:
    """`min(k, len(texts))` distinct members of `texts` in random order."""
    k = min(k, len(texts))
    return [texts[i] for i in rng.choice(len(texts), size=k, replace=False)] if k else []


def contrastive_prompts(
    task: TaskSpec,
    label: int,
    good: Sequence[str],
    bad: Sequence[str],
    *,
    s: int,
    num_variants: int,
    rng: np.random.Generator,
) -> list[str]:
    """`num_variants` contrastive prompts for class `label` (§2.8).

    Each variant shows floor(s/2) random distinct bad examples first, then s - floor(s/2)
    random distinct good examples, then the class instruction (ending with an opening quote).
    """
    word = task.label_words[label]
    instruction = fill(task.contrastive_instruction, label_word=word)
    out = []
    for _ in range(num_variants):
        lines = [task.bad_prefix + t + "\n" for t in _pick(bad, s // 2, rng)]
        lines += [task.good_prefix + t + "\n" for t in _pick(good, s - s // 2, rng)]
        out.append("".join(lines) + instruction)
    return out


def plain_prompts(
    task: TaskSpec,
    label: int,
    good: Sequence[str],
    *,
    num_variants: int,
    rng: np.random.Generator,
) -> list[str]:
    """Non-contrastive prompts: all good examples (shuffled per variant), then the instruction."""
    instruction = fill(task.plain_instruction, label_word=task.label_words[label])
    return [
        "".join(task.plain_prefix + t + "\n" for t in _pick(good, len(good), rng)) + instruction
        for _ in range(num_variants)
    ]


def aug_pe_prompts(task: TaskSpec, label: int, seeds: Sequence[str], style: str) -> list[str]:
    """One Aug-PE rephrase prompt per seed sample, all with the round's `style` (§4)."""
    word = task.label_words[label]
    return [fill(task.aug_pe_prompt, label_word=word, style=style, sample=t) for t in seeds]


def clean_generation(text: str, *, min_words: int, max_words: int = 0) -> str | None:
    """Post-processes one continuation (§2.9); None means "drop it".

    The generator already cuts at the task's stop string (the closing quote). Then: cut at
    the first remaining quote; else at the first newline; else keep the text up to its last
    sentence end (. ! ?) when it has one (a continuation that hit `max_new_tokens` ends
    mid-sentence), else keep it whole (the stripped stop string may have ended it). Whitespace
    is collapsed. Texts with fewer than `min_words` whitespace
    words are dropped; with `max_words` > 0 longer texts are cut to `max_words` words.
    """
    text = text.lstrip()
    if '"' in text:
        text = text[: text.index('"')]
    elif "\n" in text:
        text = text[: text.index("\n")]
    else:
        ends = [text.rfind(c) for c in ".!?"]
        last = max(ends)
        if last >= 0:
            text = text[: last + 1]
    text = _WS.sub(" ", text).strip()
    words = text.split(" ") if text else []
    if len(words) < max(min_words, 1):
        return None
    if max_words and len(words) > max_words:
        text = " ".join(words[:max_words])
    return text


def round_prompts(
    task: TaskSpec,
    texts: Sequence[str],
    good: Sequence[Sequence[int]],
    bad: Sequence[Sequence[int]],
    *,
    seed: int,
    round_: int,
    s: int,
    contrastive: bool,
    num_variants: int,
) -> list[list[str]]:
    """The prompt variants of every class for this round's generation (§2.8): contrastive (or
    plain) variants from the bad/good texts (`texts` is the population, `good`/`bad` index
    it per class); the zero-shot prompt for a class with no good example."""
    rng = host_rng(seed, "prompts", round_)
    out = []
    for c in range(task.num_classes):
        g = [texts[i] for i in good[c]]
        b = [texts[i] for i in bad[c]]
        if not g:
            out.append([zero_shot_prompt(task, c)])
        elif contrastive and b:
            out.append(contrastive_prompts(task, c, g, b, s=s, num_variants=num_variants, rng=rng))
        else:
            out.append(plain_prompts(task, c, g, num_variants=num_variants, rng=rng))
    return out


def rephrase_round_prompts(
    task: TaskSpec,
    texts: Sequence[str],
    good: Sequence[Sequence[int]],
    *,
    seed: int,
    round_: int,
) -> list[list[str]]:
    """Aug-PE's prompts of every class for this round: one rephrase prompt per good seed,
    in this round's style (the zero-shot prompt for a class with no seed)."""
    out = []
    for c in range(task.num_classes):
        g = [texts[i] for i in good[c]]
        styles = task.aug_pe_styles
        style = styles[int(host_rng(seed, "style", round_).integers(len(styles)))]
        out.append(aug_pe_prompts(task, c, g, style) or [zero_shot_prompt(task, c)])
    return out

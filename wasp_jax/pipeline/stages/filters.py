"""Filters for generated text, each one counted: what a continuation must pass to be kept.

In order, a continuation is dropped as

* ``empty``: nothing left after cleaning (`prompts.clean_generation`);
* ``too_short``: fewer words than the task's ``min_words``;
* ``prompt_leak``: it repeats a piece of the prompt: the good/bad prefixes, the instruction,
  the zero-shot or Aug-PE wording (any run of at least `LEAK_WORDS` words of a template,
  filled with each label word, found in the text);
* ``duplicate``: its normalised form (whitespace collapsed, lower case) is already in the
  population or kept earlier;
* ``near_duplicate``: equal to one of those once punctuation is removed as well.

The counts of every round go to `metrics.jsonl` (``filtered``) and the report; when a class
runs dry, the error names them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from wasp_jax.pipeline.run.population import normalize
from wasp_jax.pipeline.stages.prompts import clean_generation
from wasp_jax.tasks import TaskSpec

#: The reasons, in the order they are tested.
REASONS = ("empty", "too_short", "prompt_leak", "duplicate", "near_duplicate")

#: A template piece must have this many words to count as a leak when it reappears.
LEAK_WORDS = 4

_PLACEHOLDER = re.compile(r"\{(label_word|subject|style|sample)\}")
_PUNCT = re.compile(r"[^\w\s]")
_WS = re.compile(r"\s+")


def near_key(normalized: str) -> str:
    """The near-duplicate key of a normalised text: punctuation removed, spaces collapsed."""
    return _WS.sub(" ", _PUNCT.sub(" ", normalized)).strip()


def leak_markers(task: TaskSpec) -> list[str]:
    """Pieces of the task's prompt templates (near-keyed) whose reappearance is a leak."""
    templates = [
        task.zero_shot_prompt,
        task.zero_shot_prompt_without_subject,
        task.bad_prefix,
        task.good_prefix,
        task.contrastive_instruction,
        task.plain_prefix,
        task.plain_instruction,
        task.aug_pe_prompt,
    ]
    out = set()
    for template in templates:
        for word in task.label_words:
            filled = template.replace("{label_word}", word)
            for piece in _PLACEHOLDER.split(filled):
                if piece in ("subject", "style", "sample", "label_word"):
                    continue
                for part in re.split(r"[.\n!?]+", piece):
                    key = near_key(normalize(part))
                    if len(key.split(" ")) >= LEAK_WORDS:
                        out.add(key)
    return sorted(out, key=len, reverse=True)


class TextFilter:
    """Keeps new, clean, non-leaking texts of one task; counts what it drops."""

    def __init__(self, task: TaskSpec, seen: set[str]):
        self.task = task
        self.seen = seen  # normalised texts of the population (updated as texts are kept)
        self.seen_near = {near_key(s) for s in seen}
        self.markers = leak_markers(task)
        self.counts = dict.fromkeys(REASONS, 0)

    def reason(self, text: str) -> tuple[str | None, str | None]:
        """(the cleaned text, None) to keep, or (None, why) to drop."""
        task = self.task
        clean = clean_generation(text, min_words=0, max_words=task.max_words)
        if clean is None:
            return None, "empty"
        if len(clean.split(" ")) < max(task.min_words, 1):
            return None, "too_short"
        norm = normalize(clean)
        near = near_key(norm)
        padded = f" {near} "
        if any(f" {m} " in padded for m in self.markers):
            return None, "prompt_leak"
        if norm in self.seen:
            return None, "duplicate"
        if near in self.seen_near:
            return None, "near_duplicate"
        return clean, None

    def keep(self, text: str) -> str | None:
        """The cleaned text if it passes (and is then remembered), else None (counted)."""
        clean, why = self.reason(text)
        if clean is None:
            self.counts[why] += 1
            return None
        self.seen.add(normalize(clean))
        self.seen_near.add(near_key(normalize(clean)))
        return clean


def describe(counts: dict[str, int] | None) -> str:
    """'12 too short, 3 prompt leaks' style summary of filter counts ('' if none)."""
    names = {
        "empty": "empty",
        "too_short": "too short",
        "prompt_leak": "prompt leaks",
        "duplicate": "duplicates",
        "near_duplicate": "near duplicates",
    }
    parts = [f"{n} {names[k]}" for k, n in (counts or {}).items() if n and k in names]
    return ", ".join(parts)


def add_counts(total: dict[str, int], more: Iterable[tuple[str, int]]) -> dict[str, int]:
    for k, n in more:
        total[k] = total.get(k, 0) + int(n)
    return total

"""Filters for generated text, each one counted: what a continuation must pass to be kept.

In order, a continuation is dropped as

* ``empty``: nothing left after cleaning (`prompts.clean_generation`);
* ``too_short``: fewer words than the task's ``min_words``;
* ``prompt_leak``: it echoes the prompt instead of being a text of the task (`leak_rule`,
  rules below);
* ``duplicate``: its normalised form (whitespace collapsed, lower case) is already in the
  population or kept earlier;
* ``near_duplicate``: equal to one of those once punctuation is removed as well.

The counts of every round go to `metrics.jsonl` (``filtered``) and the report; when a class
runs dry, the error names them.

Prompt leaks
------------
Small PLMs often answer a prompt with its own scaffolding, verbatim or paraphrased ("Here is a
good example of a positive movie review:", "Bad example: ...", "Sure! Here's a review",
"Example 3:", "Write a ... review"). The templates of the task (zero-shot, good/bad prefixes,
contrastive and plain instructions, Aug-PE; each filled with every label word) are the
reference. A cleaned text leaks when one of these rules holds, tested in this order:

1. ``verbatim``: a run of at least `LEAK_WORDS` words of a template sentence occurs in it
   (case and punctuation ignored).
2. ``scaffold``: its first `START_WORDS` words (lower case, punctuation kept) match a
   scaffolding pattern: "<good|bad|new|first|label word> example/sample" ("A bad example of",
   "Positive samples"), "another/next example:", "example 3" or "review 2:", "here is/here's/
   below are a/the ... review/example/sample/text/version" (up to three words between),
   an assistant reply opening ("Sure!", "Sure, here", "Certainly. I can"), "as an AI", an
   instruction opening ("Write a", "Please rephrase the"), "the following is/are", a header
   such as "Positive:", "Good example:", "Review:" at the very start, or a label tag
   "(positive)" / "[good]" at the very start. The predicate use "this is a good example of"
   is not scaffolding (reviewers write it): "is/was/'s [a|another|the] [word] example" is
   removed before the example pattern is tried (but "here is a good example" is caught by
   the "here is" pattern).
3. ``label_example``: anywhere in the text, a label word within `LABEL_WINDOW` words of
   "example(s)" ("a positive example of the genre"); "for example" and "as an example" do
   not count.
4. ``fuzzy``: a template sentence, or a clause of one (cut at , ; :), with at least
   `FUZZY_MIN_CONTENT` distinct content words (lower case, stop words removed, a plural "s"
   stripped) has at least `FUZZY_SHARE` of them within a window of its own word count plus
   `FUZZY_SLACK` words of the text. Short pieces (at most `FUZZY_ORDERED` content words, such
   as "A bad movie review is") must also match in the template's word order, so that
   "I read many negative reviews of this movie" does not echo "The movie review in
   negative sentiment".

Rules 1, 3 and 4 look at the whole text; rule 2 only at its start, so that "a good example of
bad acting" deep in a real review is kept. On real data (the first 5000 training texts of
IMDb, SST-2 and Yelp under the built-in tasks) fewer than 0.1 % of texts break a rule; the
test suite checks that fewer than 1 % of up to 500 of them do.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections.abc import Iterable

from wasp_jax.pipeline.run.population import normalize
from wasp_jax.pipeline.stages.prompts import clean_generation
from wasp_jax.tasks import TaskSpec

#: The reasons, in the order they are tested.
REASONS = ("empty", "too_short", "prompt_leak", "duplicate", "near_duplicate")

#: Rule 1: a template sentence must have this many words to count as a leak when it reappears.
LEAK_WORDS = 4

#: Rule 2: the start of a text that the scaffolding patterns look at, in words.
START_WORDS = 12

#: Rule 3: words around a label word in which "example" makes a leak.
LABEL_WINDOW = 3

#: Rule 4: a template piece with at least `FUZZY_MIN_CONTENT` distinct content words
#: leaks when `FUZZY_SHARE` of them occur within its length plus `FUZZY_SLACK` words.
FUZZY_MIN_CONTENT = 3
FUZZY_SHARE = 0.75
FUZZY_SLACK = 3
#: Pieces with at most this many content words must match in the template's word order.
FUZZY_ORDERED = 4

#: Words that carry no template content (rule 4 ignores them).
STOP_WORDS = frozenset(
    "a an the is are was were be been being am of in on at to for from by with about as "
    "and or but nor so than that this these those it its it's itself there here also "
    "i me my we our you your he she they them their his her him what which who whom "
    "do does did have has had will would can could should may might must shall "
    "not no very too just only more most some any all each every such own same other "
    "into onto over under between while then once if".split()
)

_PREDICATE = re.compile(
    r"\b(is|was|are|were|be|being|'s|’s)\s+((just|simply|truly|really|clearly|also)\s+)?"
    r"(a|an|another|the|one|yet another)?\s*(\w+\s+){0,2}(examples?|samples?)(\s+of\b|(?!\s*:))"
)
_FOR_EXAMPLE = re.compile(r"\b(for|as an?) (example|instance)\b")
_PLACEHOLDER = re.compile(r"\{(label_word|subject|style|sample)\}")
_PUNCT = re.compile(r"[^\w\s]")
_WS = re.compile(r"\s+")


def near_key(normalized: str) -> str:
    """The near-duplicate key of a normalised text: punctuation removed, spaces collapsed."""
    return _WS.sub(" ", _PUNCT.sub(" ", normalized)).strip()


def _templates(task: TaskSpec) -> list[str]:
    return [
        task.zero_shot_prompt,
        task.zero_shot_prompt_without_subject,
        task.bad_prefix,
        task.good_prefix,
        task.contrastive_instruction,
        task.plain_prefix,
        task.plain_instruction,
        task.aug_pe_prompt,
    ]


def _template_sentences(task: TaskSpec) -> list[str]:
    """The sentences of every template, filled with each label word, cut at the other
    placeholders."""
    out = []
    for template in _templates(task):
        for word in task.label_words:
            filled = template.replace("{label_word}", word)
            for piece in _PLACEHOLDER.split(filled):
                if piece in ("subject", "style", "sample", "label_word"):
                    continue
                out += [p for p in re.split(r"[.\n!?]+", piece) if p.strip()]
    return out


def leak_markers(task: TaskSpec) -> list[str]:
    """Template sentences (near-keyed) of at least `LEAK_WORDS` words: rule 1, ``verbatim``."""
    out = set()
    for piece in _template_sentences(task):
        key = near_key(normalize(piece))
        if len(key.split(" ")) >= LEAK_WORDS:
            out.add(key)
    return sorted(out, key=len, reverse=True)


def _stem(word: str) -> str:
    """A light plural strip ('reviews' -> 'review'), enough to match paraphrased templates."""
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _content(words: Iterable[str]) -> list[str]:
    """The content words of `words` (stop words left out), stemmed."""
    return [_stem(w) for w in words if w and w not in STOP_WORDS]


def fuzzy_pieces(task: TaskSpec) -> list[tuple[tuple[str, ...], int, int]]:
    """The template pieces of rule 4, ``fuzzy``: (distinct content words in template order,
    how many of them must be found, window in words), for every template sentence and clause
    with at least `FUZZY_MIN_CONTENT` content words."""
    out = {}
    sentences = _template_sentences(task)
    clauses = [c for p in sentences for c in re.split(r"[,;:]+", p) if c != p]
    for piece in sentences + clauses:
        words = near_key(normalize(piece)).split(" ")
        content = tuple(dict.fromkeys(_content(words)))
        if len(content) < FUZZY_MIN_CONTENT:
            continue
        need = math.ceil(FUZZY_SHARE * len(content))
        out[content] = (content, need, len(words) + FUZZY_SLACK)
    return sorted(out.values())


def _scaffold_patterns(task: TaskSpec) -> tuple[re.Pattern, re.Pattern]:
    """Rule 2, ``scaffold``: (the patterns tried on a text's start as it is, the example
    pattern tried on it once predicate uses are removed); lower case, punctuation kept."""
    labels = "|".join(re.escape(w.lower()) for w in sorted(task.label_words, key=len)[::-1])
    scaffold = "|".join(
        f"(?:{p})"
        for p in (
            r"\b(another|next|one more)\s+(examples?|samples?)\s*(:|is\b|are\b|$)",
            # "Example 3:", "Sample #2", "Review 4:"
            r"\b(examples?|samples?)\s*#?\d+\b",
            r"\breview\s*#?\d+\s*[:.)]",
            # "Here is a good example", "Here's a review", "Below are some samples"
            r"\b(here|below)\s*(is|are|'s|’s)\s+(a|an|another|the|my|some|one|two|three|your)"
            r"(\s+[\w-]+){0,3}?\s+(reviews?|examples?|samples?|versions?|texts?|sentences?"
            r"|rephrased|rewritten|rewrite|paraphrase)\b",
            # an assistant's reply: "Sure! ...", "Sure, here's ...", "Certainly. I can ..."
            r"^(sure|certainly|of course|absolutely)\s*(!|[,.:]\s*(here|below|i can|i'd be"
            r"|i would be|happy to|glad to|the following)\b)",
            r"\bas an ai\b",
            # an instruction: "Write a ... review", "Please rephrase the following"
            r"^(please\s+|now\s+)?(write|generate|create|compose|rephrase|rewrite|paraphrase)"
            r"\s+(a|an|another|the|one|some|this|these)\b",
            r"\bthe following (is|are|reviews?|examples?|samples?|texts?|sentences?)\b",
            # a header or tag: "Positive:", "Bad review:", "Output:", "(positive)", "[good]"
            rf"^\(?\s*(((good|bad|new|{labels})\s+)?(reviews?|examples?|samples?|outputs?"
            rf"|answers?|responses?|sentiment)|{labels})\s*\)?\s*:",
            rf"^[(\[]\s*(good|bad|{labels})\s*[)\]]",
        )
    )
    # "Good example:", "A bad example of", "Positive samples", "The first example"
    example = (
        rf"\b(good|bad|new|first|second|third|final|{labels})\s+"
        r"(examples?|samples?)\b"
    )
    return re.compile(scaffold), re.compile(example)


@dataclasses.dataclass(frozen=True)
class LeakRules:
    """What `leak_rule` looks for in the texts of one task (see the module docstring)."""

    markers: tuple[str, ...]
    scaffold: re.Pattern
    example: re.Pattern
    labels: tuple[tuple[str, ...], ...]
    fuzzy: tuple[tuple[tuple[str, ...], int, int], ...]


@functools.lru_cache(maxsize=64)
def leak_rules(task: TaskSpec) -> LeakRules:
    """The leak rules of `task`, built once per task."""
    scaffold, example = _scaffold_patterns(task)
    labels = (tuple(_stem(w) for w in near_key(word.lower()).split()) for word in task.label_words)
    return LeakRules(
        markers=tuple(leak_markers(task)),
        scaffold=scaffold,
        example=example,
        labels=tuple(label for label in labels if label),
        fuzzy=tuple(fuzzy_pieces(task)),
    )


def _in_order(piece: tuple[str, ...], words: list[str]) -> int:
    """How many words of `piece` occur in `words` in the piece's order (the longest common
    subsequence)."""
    row = [0] * (len(words) + 1)
    for p in piece:
        prev = row[:]
        for j, w in enumerate(words):
            row[j + 1] = prev[j] + 1 if w == p else max(row[j], prev[j + 1])
    return row[-1]


def leak_rule(task: TaskSpec, text: str) -> str | None:
    """The first leak rule a cleaned text of `task` breaks (``verbatim``, ``scaffold``,
    ``label_example`` or ``fuzzy``; see the module docstring), or None when it breaks none.

    Example: `leak_rule(load_task("imdb"), "Bad example: the plot is thin.")` is ``scaffold``.
    """
    rules = leak_rules(task)
    near = near_key(normalize(text))
    padded = f" {near} "
    if any(f" {m} " in padded for m in rules.markers):
        return "verbatim"
    start = " ".join(text.lower().split()[:START_WORDS])
    if rules.scaffold.search(start) or rules.example.search(_PREDICATE.sub(" ", start)):
        return "scaffold"
    words = _FOR_EXAMPLE.sub(" ", near).split()
    stems = [_stem(w) for w in words]
    at = [j for j, w in enumerate(stems) if w == "example"]
    if at:
        for label in rules.labels:
            n = len(label)
            for i in range(len(stems) - n + 1):
                if tuple(stems[i : i + n]) == label and any(
                    i - LABEL_WINDOW <= j < i + n + LABEL_WINDOW for j in at
                ):
                    return "label_example"
    content = ["" if w in STOP_WORDS else s for w, s in zip(words, stems, strict=True)]
    present = set(content)
    for piece, need, window in rules.fuzzy:
        wanted = set(piece)
        if len(wanted & present) < need:
            continue
        ordered = len(piece) <= FUZZY_ORDERED
        for i in range(max(len(content) - window, 0) + 1):
            part = content[i : i + window]
            if len(wanted.intersection(part)) >= need and (
                not ordered or _in_order(piece, part) >= need
            ):
                return "fuzzy"
    return None


class TextFilter:
    """Keeps new, clean, non-leaking texts of one task; counts what it drops."""

    def __init__(self, task: TaskSpec, seen: set[str]):
        self.task = task
        self.seen = seen  # normalised texts of the population (updated as texts are kept)
        self.seen_near = {near_key(s) for s in seen}
        self.counts = dict.fromkeys(REASONS, 0)

    def reason(self, text: str) -> tuple[str | None, str | None]:
        """(the cleaned text, None) to keep, or (None, why) to drop."""
        task = self.task
        clean = clean_generation(text, min_words=0, max_words=task.max_words)
        if clean is None:
            return None, "empty"
        if len(clean.split(" ")) < max(task.min_words, 1):
            return None, "too_short"
        if leak_rule(task, clean) is not None:
            return None, "prompt_leak"
        norm = normalize(clean)
        near = near_key(norm)
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
        "below_top_margin": "below the kept margins (oversampling)",
        "nearer_other_class": "nearer another class's prototype",
    }
    parts = [f"{n} {names[k]}" for k, n in (counts or {}).items() if n and k in names]
    return ", ".join(parts)


def add_counts(total: dict[str, int], more: Iterable[tuple[str, int]]) -> dict[str, int]:
    for k, n in more:
        total[k] = total.get(k, 0) + int(n)
    return total

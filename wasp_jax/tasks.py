"""Task specs: everything task-specific the pipeline needs, read from one JSON file.

A task is a classification problem described by a JSON file (built-ins live in
`wasp_jax/tasks/`: imdb, yelp_category, yelp_rating, sst2). Adding a task needs a file and
no code: `load_task("path/to/my_task.json")`. Fields (templates use `{label_word}`,
`{subject}`, `{style}` and `{sample}` placeholders, filled by plain substitution, so braces in
texts are safe):

* ``name``, ``description``; ``labels``: class names, index = label id; ``label_words``: the
  word(s) put into prompts for each class (defaults to ``labels``).
* ``label_field`` (default "label") and ``label_offset`` (default 0): the label of a data
  record is ``record[label_field] + label_offset`` (yelp_rating reads ``rating - 1``).
* ``zero_shot``: ``prompt`` (with ``{label_word}`` and optionally ``{subject}``); optionally a
  two-stage ZeroGen form with ``subject_prompt`` (e.g. 'Movie: "') and
  ``subject_max_new_tokens``, and ``prompt_without_subject`` as the fallback.
* ``contrastive``: ``bad_prefix``, ``good_prefix``, ``instruction`` (docs/method.md §2.8).
* ``non_contrastive``: ``prefix``, ``instruction`` (the "w/o contrastive" ablation).
* ``aug_pe``: ``prompt`` (``{label_word}``, ``{style}``, ``{sample}``) and ``styles``.
* ``min_words``, ``max_words`` (0 = no limit): kept samples' whitespace word counts.
* ``min_new_tokens``, ``max_new_tokens``: decoding defaults; ``stop``: stop strings.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
from collections.abc import Sequence
from importlib import resources
from typing import Any

from wasp_jax import task_schema
from wasp_jax.errors import TaskError


@dataclasses.dataclass(frozen=True, kw_only=True)
class TaskSpec:
    """A parsed, validated task spec (see the module docstring for the fields)."""

    name: str
    description: str
    labels: tuple[str, ...]
    label_words: tuple[str, ...]
    label_field: str
    label_offset: int
    zero_shot_prompt: str
    zero_shot_prompt_without_subject: str
    subject_prompt: str | None
    subject_max_new_tokens: int
    bad_prefix: str
    good_prefix: str
    contrastive_instruction: str
    plain_prefix: str
    plain_instruction: str
    aug_pe_prompt: str
    aug_pe_styles: tuple[str, ...]
    min_words: int
    max_words: int
    min_new_tokens: int
    max_new_tokens: int
    stop: tuple[str, ...]
    source: str

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def label_of(self, record: dict[str, Any]) -> Any:
        """The raw label value of a data record (before range checks)."""
        value = record.get(self.label_field)
        if isinstance(value, int) and not isinstance(value, bool):
            return value + self.label_offset
        return value


def builtin_tasks() -> list[str]:
    """Names of the bundled task specs."""
    folder = resources.files("wasp_jax") / "tasks"
    return sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json"))


def _require(d: dict, key: str, kind: type, where: str) -> Any:
    if key not in d:
        raise TaskError(f"{where}: missing field {key!r}")
    if not isinstance(d[key], kind):
        raise TaskError(f"{where}: field {key!r} must be {kind.__name__}, got {d[key]!r}")
    return d[key]


def parse_task(d: dict[str, Any], source: str = "<dict>") -> TaskSpec:
    """Validates a task dict (the JSON content) and returns a `TaskSpec`."""
    w = f"task {source}"
    task_schema.check_fields(d, w)
    name = _require(d, "name", str, w)
    labels = tuple(_require(d, "labels", list, w))
    if len(labels) < 2 or not all(isinstance(x, str) and x for x in labels):
        raise TaskError(f"{w}: 'labels' must list at least two non-empty class names")
    words = tuple(d.get("label_words", labels))
    if len(words) != len(labels):
        raise TaskError(f"{w}: 'label_words' has {len(words)} entries, 'labels' {len(labels)}")
    zs = _require(d, "zero_shot", dict, w)
    ct = _require(d, "contrastive", dict, w)
    nc = _require(d, "non_contrastive", dict, w)
    ap = _require(d, "aug_pe", dict, w)
    prompt = _require(zs, "prompt", str, w + " zero_shot")
    subject_prompt = zs.get("subject_prompt")
    if "{subject}" in prompt and not subject_prompt:
        raise TaskError(f"{w}: zero_shot.prompt uses {{subject}} but no subject_prompt is given")
    styles = tuple(ap.get("styles", ["in a different way"]))
    spec = TaskSpec(
        name=name,
        description=str(d.get("description", "")),
        labels=labels,
        label_words=words,
        label_field=str(d.get("label_field", "label")),
        label_offset=task_schema.integer(d, "label_offset", 0, w, minimum=-(2**31)),
        zero_shot_prompt=prompt,
        zero_shot_prompt_without_subject=str(
            zs.get("prompt_without_subject", prompt.replace(' for "{subject}"', ""))
        ),
        subject_prompt=subject_prompt,
        subject_max_new_tokens=task_schema.integer(zs, "subject_max_new_tokens", 10, w, 1),
        bad_prefix=_require(ct, "bad_prefix", str, w + " contrastive"),
        good_prefix=_require(ct, "good_prefix", str, w + " contrastive"),
        contrastive_instruction=_require(ct, "instruction", str, w + " contrastive"),
        plain_prefix=_require(nc, "prefix", str, w + " non_contrastive"),
        plain_instruction=_require(nc, "instruction", str, w + " non_contrastive"),
        aug_pe_prompt=_require(ap, "prompt", str, w + " aug_pe"),
        aug_pe_styles=styles,
        min_words=task_schema.integer(d, "min_words", 1, w),
        max_words=task_schema.integer(d, "max_words", 0, w),
        min_new_tokens=task_schema.integer(d, "min_new_tokens", 0, w),
        max_new_tokens=task_schema.integer(d, "max_new_tokens", 100, w, 1),
        stop=tuple(d.get("stop", ['"'])),
        source=source,
    )
    if "{sample}" not in spec.aug_pe_prompt:
        raise TaskError(f"{w}: aug_pe.prompt must contain {{sample}}")
    if not styles:
        raise TaskError(f"{w}: aug_pe.styles must not be empty")
    if spec.min_words < 0 or spec.max_words < 0:
        raise TaskError(f"{w}: min_words/max_words must be >= 0")
    if spec.max_words and spec.max_words < spec.min_words:
        raise TaskError(f"{w}: max_words ({spec.max_words}) < min_words ({spec.min_words})")
    if not 1 <= spec.max_new_tokens or spec.min_new_tokens > spec.max_new_tokens:
        raise TaskError(f"{w}: need 0 <= min_new_tokens <= max_new_tokens and max >= 1")
    # the same template checks as check-task, so that a run never spends its budget on
    # prompts that cannot name their class
    problems, _ = check_templates(spec)
    if problems:
        raise TaskError(f"{w}: " + "; ".join(problems) + " (wasp-jax check-task explains each)")
    return spec


def load_task(name_or_path: str) -> TaskSpec:
    """Loads a built-in task by name or a task JSON file by path.

    Raises:
        TaskError: unknown name (listing the built-ins), unreadable file, bad JSON or spec.
    """
    p = pathlib.Path(name_or_path)
    if name_or_path in builtin_tasks():
        text = (resources.files("wasp_jax") / "tasks" / f"{name_or_path}.json").read_text()
        source = name_or_path
    elif p.suffix == ".json" or p.exists():
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as err:
            raise TaskError(f"cannot read task file {name_or_path!r}: {err}") from err
        source = str(p)
    else:
        raise TaskError(
            f"unknown task {name_or_path!r}; built-in tasks: {', '.join(builtin_tasks())} "
            "(or give the path of a task JSON file)"
        )
    try:
        d = json.loads(text)
    except json.JSONDecodeError as err:
        raise TaskError(f"task {source}: not valid JSON ({err})") from err
    if not isinstance(d, dict):
        raise TaskError(f"task {source}: expected a JSON object")
    return parse_task(d, source)


#: Rephrasing styles of a drafted task's Aug-PE prompt.
DRAFT_STYLES = (
    "in a casual way",
    "in a formal way",
    "in a more detailed way",
    "more concisely",
    "in simple words",
    "with more vivid language",
    "as a first-person account",
    "in a calm and balanced tone",
)

#: The placeholders a template may use.
PLACEHOLDERS = ("label_word", "subject", "style", "sample")


#: The typical text length (words) a drafted task assumes when none is given.
DRAFT_TYPICAL_WORDS = 50

_IDENTIFIER = re.compile(r"^[A-Za-z0-9]+(?:_+[A-Za-z0-9]+)+$|^[a-z]+(?:[A-Z][a-z0-9]+)+$")


def is_identifier(label: str) -> bool:
    """Whether `label` looks like a code identifier ("card_about_to_expire", "cardExpiry"),
    which a small PLM copies into its text instead of reading as words."""
    return bool(_IDENTIFIER.match(label.strip()))


def label_words_of(label: str) -> str:
    """The words a prompt should use for `label`: an identifier's parts, lower-cased
    ("card_about_to_expire" -> "card about to expire", "cardExpiry" -> "card expiry");
    any other label as it is."""
    text = label.strip()
    if not is_identifier(text):
        return text
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", text)
    return re.sub(r"_+", " ", text).lower()


def draft_task(
    *,
    name: str,
    description: str,
    labels: Sequence[str],
    typical_words: float | None = None,
    label_field: str = "label",
    label_offset: int = 0,
) -> dict[str, Any]:
    """A task spec dict for `labels` written from generic templates around `description`.

    Every prompt names the class by its label word (the label, or the words of an identifier
    label: "card_about_to_expire" -> "card about to expire", `label_words_of`) and the kind of
    text by `description`, best a short noun phrase ("Yelp business reviews"). Lengths follow
    a typical text length m in words, a public figure (what the description implies;
    `DRAFT_TYPICAL_WORDS` by default), never one measured on private texts: min_words =
    max(3, m / 5), max_new_tokens = clip(2 m, 32, 400) (about 1.3 tokens per word, with room
    for longer texts), min_new_tokens = clip(m / 3, 4, 64). `label_field` and `label_offset`
    say how a record's label becomes a class id.
    """
    what = description.strip().rstrip(".")
    cat = 'the category "{label_word}"'
    m = max(float(DRAFT_TYPICAL_WORDS if typical_words is None else typical_words), 1.0)
    max_new = int(min(400, max(32, round(2 * m))))
    return {
        "name": name,
        "description": f"{what}; {len(labels)} classes, drafted by wasp-jax init-task",
        "labels": list(labels),
        "label_words": [label_words_of(label) for label in labels],
        "label_field": label_field,
        "label_offset": int(label_offset),
        "zero_shot": {"prompt": f'An example of {what} in {cat}: "'},
        "contrastive": {
            "bad_prefix": f"A bad example of {what} is: ",
            "good_prefix": f"A good example of {what} is: ",
            "instruction": (
                f"\nBased on the above bad and good examples of {what} in {cat}, analyze the "
                "differences between the bad and the good ones. Write a new example in "
                f"{cat} that is diverse in expression compared to the good examples and "
                "further refined than them, so that the good examples lie midway between the "
                'new example and the bad ones. The new example is: "'
            ),
        },
        "non_contrastive": {
            "prefix": "An example is: ",
            "instruction": (
                f"Based on the above examples of {what} in {cat}, a new example in the same "
                'category but diverse in expression compared to them is: "'
            ),
        },
        "aug_pe": {
            "prompt": (
                f"The following is an example of {what} in {cat}. Rephrase it {{style}}:\n"
                "{sample}\n"
            ),
            "styles": list(DRAFT_STYLES),
        },
        "min_words": int(max(3, round(m / 5))),
        "max_words": 0,
        "min_new_tokens": int(min(64, max(4, round(m / 3)))),
        "max_new_tokens": max_new,
        "stop": ['"'],
    }


def template_fields(task: TaskSpec) -> dict[str, str]:
    """Every prompt template of a task, by the name of its spec field."""
    return {
        "zero_shot.prompt": task.zero_shot_prompt,
        "zero_shot.prompt_without_subject": task.zero_shot_prompt_without_subject,
        "contrastive.bad_prefix": task.bad_prefix,
        "contrastive.good_prefix": task.good_prefix,
        "contrastive.instruction": task.contrastive_instruction,
        "non_contrastive.prefix": task.plain_prefix,
        "non_contrastive.instruction": task.plain_instruction,
        "aug_pe.prompt": task.aug_pe_prompt,
    }


#: Per template: (the placeholders it must use, those it may use). The pipeline fills only
#: these; any other placeholder would reach the PLM as it is.
TEMPLATE_SLOTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "zero_shot.prompt": (("label_word",), ("label_word", "subject")),
    "zero_shot.prompt_without_subject": (("label_word",), ("label_word",)),
    "contrastive.bad_prefix": ((), ()),
    "contrastive.good_prefix": ((), ()),
    "contrastive.instruction": (("label_word",), ("label_word",)),
    "non_contrastive.prefix": ((), ()),
    "non_contrastive.instruction": (("label_word",), ("label_word",)),
    "aug_pe.prompt": (("sample",), ("label_word", "style", "sample")),
}

_SLOT = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def placeholders_in(template: str) -> list[str]:
    """The `{name}` placeholders of a template, in order of first use."""
    return list(dict.fromkeys(_SLOT.findall(template)))


def check_templates(task: TaskSpec) -> tuple[list[str], list[str]]:
    """(problems, warnings) of a task's templates and class words, without rendering.

    A problem: an unknown placeholder, a known one that the pipeline does not fill in that
    template, a missing required one ({label_word} wherever a prompt must name the class,
    {sample} in the Aug-PE prompt), an empty or non-string label word, or two classes whose
    names differ only in case (a data label given by name could not tell them apart).
    Warnings: an Aug-PE prompt without {label_word} or {style}, classes sharing a label word.
    """
    problems, warnings = [], []
    fields = template_fields(task)
    if task.subject_prompt is not None:
        fields["zero_shot.subject_prompt"] = str(task.subject_prompt)
    if "{subject}" not in task.zero_shot_prompt:  # the subject-less form is then unused
        del fields["zero_shot.prompt_without_subject"]
    for field, text in fields.items():
        required, allowed = TEMPLATE_SLOTS.get(field, ((), ()))
        used = placeholders_in(text)
        unknown = [u for u in used if u not in PLACEHOLDERS]
        if unknown:
            problems.append(
                f"{field}: unknown placeholder(s) {unknown}; known: {list(PLACEHOLDERS)}"
            )
        unfilled = [u for u in used if u in PLACEHOLDERS and u not in allowed]
        if unfilled:
            may = ", ".join("{" + a + "}" for a in allowed) or "none"
            problems.append(
                f"{field}: {unfilled} is never filled in this template (it may use: {may})"
            )
        for need in required:
            if need not in used:
                problems.append(f"{field} lacks {{{need}}}: {_WHY[need]}")
    if "label_word" not in placeholders_in(task.aug_pe_prompt):
        warnings.append("aug_pe.prompt lacks {label_word}: rephrasings do not name the class")
    if "style" not in placeholders_in(task.aug_pe_prompt):
        warnings.append("aug_pe.prompt lacks {style}: aug_pe.styles are never used")
    words = task.label_words
    bad = [i for i, w in enumerate(words) if not isinstance(w, str) or not w.strip()]
    if bad:
        problems.append(f"label_words of class(es) {bad} must be non-empty strings")
    folded = [name.casefold() for name in task.labels]
    twins = sorted({n for n in folded if folded.count(n) > 1})
    if twins:
        problems.append(f"labels {twins} occur twice (names are matched without case)")
    coded = [w for w in words if isinstance(w, str) and is_identifier(w)]
    if coded:
        warnings.append(
            f"label word(s) {coded} look like identifiers: a small PLM copies them into its "
            "texts; write them as words (e.g. "
            f"{label_words_of(coded[0])!r}) in 'label_words'"
        )
    shared = sorted({w for w in words if isinstance(w, str) and words.count(w) > 1})
    if shared:
        warnings.append(f"label word(s) {shared} name more than one class: their prompts match")
    return problems, warnings


_WHY = {
    "label_word": "its prompts would not name the class",
    "sample": "the Aug-PE prompt would not show the sample to rephrase",
}

"""`wasp-jax init-task` and `wasp-jax check-task`: a task spec for your own data, and its check.

`init-task --data X.jsonl --description "..." --out t.json` drafts a task spec
(`wasp_jax.tasks.draft_task`): the labels come from the data, every prompt is filled from a
generic template around the description, and the lengths follow the data's median length.
Label order: integer labels by id (they must be 0 .. C-1; a `label_name` field names them),
string labels sorted by name, so the data file validates against the task as it is.

`check-task TASK --data X.jsonl` checks a task (a file or a built-in name) against a data file:
that it loads, that every data label is a task label and every task label has samples, that
every template uses only known placeholders and names the class, that every prompt renders
for every class, and that the length limits fit the data. It prints label names, counts and
prompt sizes, never a text of the data (which may be private). Problems exit 2; warnings 0.
"""

from __future__ import annotations

import argparse
import collections
import pathlib
import re
import statistics
import sys

import numpy as np

from wasp_jax import data as data_io
from wasp_jax import tasks
from wasp_jax.errors import DataError, TaskError, UsageError

_SLOT = re.compile(r"\{([A-Za-z_]+)\}")


def register_init_task(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="labelled JSONL file (text, label)")
    parser.add_argument(
        "--description", required=True, help='what the texts are, e.g. "Yelp business reviews"'
    )
    parser.add_argument("--out", required=True, help="the task JSON to write")
    parser.add_argument("--name", help="the task's name (default: the --out file's stem)")
    parser.add_argument("--label-field", default="label", help="the label's field (label)")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")


def register_check_task(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", help="a task JSON file or a built-in task name")
    parser.add_argument("--data", required=True, help="labelled JSONL file to check against")


# ------------------------------------------------------------------------------ init-task


def _labels_of(path: str, field: str) -> tuple[list[str], list[int], list[int]]:
    """(class names in task order, label id per row, words per row) of a labelled file."""
    rows = data_io.read_jsonl(path, what="data")
    if not rows:
        raise DataError(f"data file {path!r} holds no records; give a labelled JSONL file")
    raw, names, words = [], collections.defaultdict(collections.Counter), []
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict) or field not in row or not isinstance(row.get("text"), str):
            raise DataError(f"{path}, line {i}: needs a string 'text' and a '{field}' field")
        value = row[field]
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise DataError(f"{path}, line {i}: '{field}' must be an int id or a class name")
        raw.append(value)
        words.append(len(row["text"].split()))
        if isinstance(value, int) and isinstance(row.get("label_name"), str):
            names[value][row["label_name"].strip()] += 1
    kinds = {type(v) for v in raw}
    if len(kinds) > 1:
        raise DataError(f"{path}: '{field}' mixes int ids and class names; use one kind")
    if kinds == {str}:
        labels = sorted({v.strip() for v in raw}, key=str.lower)
        index = {name.lower(): i for i, name in enumerate(labels)}
        ids = [index[v.strip().lower()] for v in raw]
    else:
        found = sorted(set(raw))
        if found != list(range(len(found))):
            raise DataError(
                f"{path}: int labels must be 0 .. C-1, found {found[:10]}; renumber them or "
                "use class names as labels"
            )
        labels = [names[i].most_common(1)[0][0] if names[i] else f"class {i}" for i in found]
        ids = list(raw)
    if len(labels) < 2:
        raise DataError(f"{path}: only one class ({labels[0]!r}); a task needs at least two")
    return labels, ids, words


def main_init_task(args: argparse.Namespace) -> int:
    if not args.description.strip():
        raise UsageError("--description is empty; say what the texts are, e.g. 'news articles'")
    out = pathlib.Path(args.out)
    if out.exists() and not args.force:
        raise UsageError(f"{out} exists; pass --force to overwrite it or choose another --out")
    labels, ids, words = _labels_of(args.data, args.label_field)
    spec = tasks.draft_task(
        name=args.name or out.stem,
        description=args.description,
        labels=labels,
        median_words=statistics.median(words),
        label_field=args.label_field,
    )
    try:
        tasks.parse_task(spec, str(out))
    except TaskError as err:  # e.g. a description that breaks a template
        raise UsageError(f"the drafted task is invalid: {err}") from None
    data_io.atomic_write_json(out, spec)
    counts = collections.Counter(ids)
    print(f"wrote {out}: task {spec['name']!r}, {len(labels)} classes")
    for i, name in enumerate(labels):
        print(f"  {i} = {name!r}: {counts[i]} samples")
    print(
        f"  min_words {spec['min_words']}, new tokens {spec['min_new_tokens']}-"
        f"{spec['max_new_tokens']} (median text: {statistics.median(words):g} words)\n"
        f"next: wasp-jax check-task {out} --data {args.data}"
    )
    return 0


# ----------------------------------------------------------------------------- check-task


def check(task: tasks.TaskSpec, data: str) -> tuple[list[str], list[str], list[str]]:
    """(problems, warnings, report lines) of `task` against the data file `data`."""
    from wasp_jax.pipeline import prompts as P  # rendering only: no models

    problems, warn, lines = [], [], []
    try:
        rows = data_io.read_labeled_jsonl(
            data, label_names=task.labels, label_field=task.label_field,
            label_offset=task.label_offset, what="data",
        )  # fmt: skip
    except DataError as err:
        return [str(err)], warn, lines
    counts = collections.Counter(r["label"] for r in rows)
    lines.append(f"task {task.name!r}: {task.num_classes} classes; {data}: {len(rows)} samples")
    for i, name in enumerate(task.labels):
        lines.append(f"  {i} = {name!r} (label word {task.label_words[i]!r}): {counts[i]}")
        if not counts[i]:
            warn.append(f"class {i} ({name!r}) has no samples in {data}")
    for field, text in tasks.template_fields(task).items():
        unknown = sorted(set(_SLOT.findall(text)) - set(tasks.PLACEHOLDERS))
        if unknown:
            problems.append(f"{field}: unknown placeholder(s) {unknown}; known: "
                            f"{list(tasks.PLACEHOLDERS)}")  # fmt: skip
    for field in ("zero_shot.prompt_without_subject", "contrastive.instruction",
                  "non_contrastive.instruction"):  # fmt: skip
        if "{label_word}" not in tasks.template_fields(task)[field]:
            problems.append(f"{field} lacks {{label_word}}: its prompts would not name the class")
    if "{label_word}" not in task.aug_pe_prompt:
        warn.append("aug_pe.prompt lacks {label_word}: rephrasings do not name the class")
    median = statistics.median(len(r["text"].split()) for r in rows) if rows else 0
    if task.min_words > median:
        warn.append(f"min_words={task.min_words} exceeds the data's median length ({median:g} "
                    "words): most generated texts of that length would be dropped")  # fmt: skip
    if task.max_new_tokens < 1.3 * median:
        warn.append(f"max_new_tokens={task.max_new_tokens} is short for the data's median "
                    f"length of {median:g} words (about {1.3 * median:.0f} tokens)")  # fmt: skip
    rng = np.random.default_rng(0)
    dummy = ["An example text of a few plain words."] * 4
    for c in range(task.num_classes):
        rendered = {
            "zero-shot": [P.zero_shot_prompt(task, c)],
            "contrastive": P.contrastive_prompts(
                task, c, dummy, dummy, s=4, num_variants=1, rng=rng
            ),  # fmt: skip
            "non-contrastive": P.plain_prompts(task, c, dummy, num_variants=1, rng=rng),
            "aug-pe": P.aug_pe_prompts(task, c, dummy[:1], task.aug_pe_styles[0]),
        }
        for kind, prompts in rendered.items():
            left = sorted(set(_SLOT.findall(prompts[0])) & set(tasks.PLACEHOLDERS))
            if left:
                problems.append(f"class {c} {kind} prompt still holds {left} after rendering")
        if c == 0:
            sizes = ", ".join(f"{k} {len(v[0])} chars / {len(v[0].split())} words"
                              for k, v in rendered.items())  # fmt: skip
            lines.append(f"  prompts of class 0 (4 dummy examples): {sizes}")
    lines.append(f"  data median length {median:g} words; task keeps >= {task.min_words} words, "
                 f"generates {task.min_new_tokens}-{task.max_new_tokens} new tokens")  # fmt: skip
    return problems, warn, lines


def main_check_task(args: argparse.Namespace) -> int:
    try:
        task = tasks.load_task(args.task)
    except TaskError as err:
        raise UsageError(str(err)) from None
    problems, warn, lines = check(task, args.data)
    print("\n".join(lines))
    for w in warn:
        print(f"wasp-jax check-task: warning: {w}", file=sys.stderr)
    for p in problems:
        print(f"wasp-jax check-task: error: {p}", file=sys.stderr)
    if problems:
        return 2
    print(f"{args.task}: OK for {args.data}" + (f" ({len(warn)} warnings)" if warn else ""))
    return 0

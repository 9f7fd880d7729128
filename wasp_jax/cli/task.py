"""`wasp-jax init-task` and `wasp-jax check-task`: a task spec for your own data, and its check.

`init-task --data X.jsonl --description "..." --out t.json` drafts a task spec
(`wasp_jax.tasks.draft_task`): the labels come from the data, every prompt is filled from a
generic template around the description, and the lengths follow `--typical-words` (a public
figure: what the description implies) or a default. Only the labels of the data are read, since
it may be the private set: nothing in the task is computed from its texts. Class order, so
that the data file validates against the task as it is:

* int labels: ascending id. The ids must be consecutive (k .. k+C-1); the task reads them
  with `label_offset = -k`, so 0-based ids map to themselves and 1-5 stars to 0-4. With the
  "label" field, a `label_name` string field names each id (one name per id); ids without
  one are called "<field> <id>" and should be renamed in the written file.
* string labels (class names): sorted without regard to case, the way the data reader
  matches names; the most frequent spelling of a name is kept.

The file is written atomically, never over an existing one without --force, and only after
the data file has been read back against the drafted task.

`check-task TASK --data X.jsonl` checks a task (a file or a built-in name) against a data file:
that it loads, that every data label is a task label and every task label has samples, that
every template uses only placeholders the pipeline fills there and names the class, that
every prompt renders for every class, and that the length limits fit the data. It prints label
names, counts and prompt sizes, never a text of the data (which may be private). Problems
exit 2, one line each; warnings alone exit 0.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import pathlib
import statistics
import sys

from wasp_jax import data as data_io
from wasp_jax import tasks
from wasp_jax.errors import DataError, TaskError, UsageError


def register_init_task(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="labelled JSONL file (text, label)")
    parser.add_argument(
        "--description",
        required=True,
        help='what the texts are, as a short noun phrase, e.g. "Yelp business reviews"',
    )
    parser.add_argument("--out", required=True, help="the task JSON to write")
    parser.add_argument("--name", help="the task's name (default: the --out file's stem)")
    parser.add_argument(
        "--typical-words",
        type=float,
        default=None,
        help="typical length of one text in words, as known from what the texts are (not "
        f"measured on the data); sets the task's lengths (default {tasks.DRAFT_TYPICAL_WORDS})",
    )
    parser.add_argument(
        "--label-field", default="label", help="the record field holding the class (label)"
    )
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")


def register_check_task(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", help="a task JSON file or a built-in task name")
    parser.add_argument("--data", required=True, help="labelled JSONL file to check against")


# ------------------------------------------------------------------------------ init-task


@dataclasses.dataclass(frozen=True)
class LabelScan:
    """The classes of a labelled file, in task order (see the module docstring)."""

    labels: list[str]
    offset: int  # the task's label_offset
    counts: list[int]  # samples per class
    unnamed: list[int]  # classes whose name is a stand-in ("label 3")


def scan_labels(path: str, field: str = "label") -> LabelScan:
    """Reads the labels of a labelled JSONL file and orders its classes for a task.

    Only the label fields (`field`, `label_name`) are read; the texts are left alone (the
    file may be the private set).

    Raises:
        DataError: unreadable or empty file, a record without a label, labels of two kinds,
            gaps between int ids, an id with two names, fewer than two classes. Messages name
            lines and labels, never texts.
    """
    numbered = data_io.read_records(path, what="data", label_field=field)  # any input format
    if not numbered:
        raise DataError(f"data file {path!r} holds no records; it needs one JSON object a line")
    values, names, all_named = [], {}, True
    for line, row in numbered:
        where = f"data file {path!r}, {line}"
        if field not in row:
            raise DataError(f"{where}: no {field!r} field; --label-field names the class field")
        value = row[field]
        if isinstance(value, str):
            value = value.strip()
            if not value:
                raise DataError(f"{where}: {field!r} is an empty class name")
        elif isinstance(value, bool) or not isinstance(value, int):
            raise DataError(
                f"{where}: {field!r} must be an int id or a class name, got a "
                f"{type(value).__name__}"
            )
        name = row.get("label_name")
        named = isinstance(name, str) and bool(name.strip())
        all_named &= named
        if isinstance(value, int) and field == "label" and named:
            first = names.setdefault(value, (name.strip(), line))
            if first[0].casefold() != name.strip().casefold():
                raise DataError(
                    f"{where}: label {value} is named {name.strip()!r} here but {first[0]!r} "
                    f"on {first[1]}; give each label id one label_name"
                )
        values.append(value)
    if len({type(v) for v in values}) > 1:
        raise DataError(f"data file {path!r}: {field!r} mixes int ids and class names; use one")
    if isinstance(values[0], str):
        distinct = len({v.casefold() for v in values})
        if distinct > 100 or (distinct > 10 and 2 * distinct > len(values)):
            raise DataError(
                f"data file {path!r}: {distinct} distinct {field!r} values in {len(values)} "
                "records; is --label-field the field that holds the class?"
            )
        spellings = collections.defaultdict(collections.Counter)
        for v in values:
            spellings[v.casefold()][v] += 1
        keys = sorted(spellings)
        labels = [min(spellings[k].items(), key=lambda kv: (-kv[1], kv[0]))[0] for k in keys]
        index = {k: i for i, k in enumerate(keys)}
        ids, offset, unnamed = [index[v.casefold()] for v in values], 0, []
    else:
        found = sorted(set(values))
        if found != list(range(found[0], found[0] + len(found))):
            hint = (
                ", or pass --label-field label_name to take the classes by name"
                if all_named and field == "label"
                else ""
            )
            raise DataError(
                f"data file {path!r}: int labels must be consecutive ids, found "
                f"{found[:12]}{' ...' if len(found) > 12 else ''}; renumber them 0 .. C-1{hint}"
            )
        offset = -found[0]
        labels = [names[v][0] if v in names else f"{field} {v}" for v in found]
        ids = [v + offset for v in values]
        unnamed = [i for i, v in enumerate(found) if v not in names]
    if len(labels) < 2:
        raise DataError(
            f"data file {path!r}: only one class ({labels[0]!r}); a task needs at least two"
        )
    counts = collections.Counter(ids)
    return LabelScan(labels, offset, [counts[i] for i in range(len(labels))], unnamed)


def main_init_task(args: argparse.Namespace) -> int:
    description = " ".join(args.description.split())
    if not description:
        raise UsageError("--description is empty; say what the texts are, e.g. 'news articles'")
    out = pathlib.Path(args.out)
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give a file path such as {out / 'task.json'}")
    if out.exists() and not args.force:
        raise UsageError(f"{out} exists; pass --force to overwrite it or choose another --out")
    if out.exists() and out.resolve() == pathlib.Path(args.data).resolve():
        raise UsageError("--out is the data file itself; choose another path for the task")
    if args.label_field == "text":
        raise UsageError("--label-field text names the texts; give the field holding the class")
    if args.typical_words is not None and not 1 <= args.typical_words <= 10_000:
        raise UsageError(f"--typical-words must be in [1, 10000], got {args.typical_words:g}")
    scan = scan_labels(args.data, args.label_field)
    spec = tasks.draft_task(
        name=args.name or out.stem,
        description=description,
        labels=scan.labels,
        typical_words=args.typical_words,
        label_field=args.label_field,
        label_offset=scan.offset,
    )
    try:
        task = tasks.parse_task(spec, str(out))
    except TaskError as err:
        raise UsageError(f"the drafted task is invalid: {err}") from None
    data_io.read_labeled_jsonl(  # the data must validate against the task as written
        args.data,
        label_names=task.labels,
        label_field=task.label_field,
        label_offset=task.label_offset,
        what="data",
    )
    data_io.atomic_write_json(out, spec)
    print(f"wrote {out}: task {spec['name']!r}, {len(scan.labels)} classes from {args.data}")
    for i, name in enumerate(scan.labels):
        words = spec["label_words"][i]
        said = f" (prompts say {words!r})" if words != name else ""
        print(f"  {i} = {name!r}: {scan.counts[i]} samples{said}")
    shift = f" {scan.offset:+d}" if scan.offset else ""
    typical = args.typical_words or tasks.DRAFT_TYPICAL_WORDS
    given = "--typical-words" if args.typical_words else "the default; set --typical-words"
    print(
        f"  class id = {args.label_field}{shift}; typical text {typical:g} words ({given}) -> "
        f"min_words {spec['min_words']}, new tokens {spec['min_new_tokens']}-"
        f"{spec['max_new_tokens']}"
    )
    if scan.unnamed:
        print(
            f"wasp-jax init-task: warning: the data names no class for id(s) {scan.unnamed}; "
            f"edit 'labels' and 'label_words' in {out} so that the prompts name them",
            file=sys.stderr,
        )
    print(f"next: review the prompts in {out}, then wasp-jax check-task {out} --data {args.data}")
    return 0


# ----------------------------------------------------------------------------- check-task


def _class_of(task: tasks.TaskSpec, value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value < task.num_classes else None
    if isinstance(value, str):
        folded = [name.casefold() for name in task.labels]
        key = value.strip().casefold()
        return folded.index(key) if key in folded else None
    return None


def _shown(value) -> str:
    """A label value as a report may show it: short names and numbers only."""
    if isinstance(value, str) and len(value) > 40:
        return f"<a {len(value)}-character string>"
    return repr(value) if isinstance(value, str | int | float) else f"<a {type(value).__name__}>"


def _label_problems(task: tasks.TaskSpec, raw: list[dict], data: str) -> list[str]:
    """One problem per label value of the data that is not a class of the task."""
    if task.label_field == "text":
        return ["the task's label_field is 'text', the field of the texts themselves"]
    missing = sum(task.label_field not in row for row in raw)
    outside = collections.Counter(
        _shown(task.label_of(row))
        for row in raw
        if task.label_field in row and _class_of(task, task.label_of(row)) is None
    )
    problems = []
    if missing:
        problems.append(f"{missing} record(s) of {data} lack the {task.label_field!r} field")
    known = f"ids 0 .. {task.num_classes - 1} or the names {list(task.labels)}"
    if len(outside) > 5:  # many values: maybe not a label field; show none of them
        n = sum(outside.values())
        problems.append(
            f"{n} record(s) of {data} have {len(outside)} distinct {task.label_field!r} values "
            f"that are not classes of the task ({known})"
        )
        return problems
    offset = f" after label_offset {task.label_offset:+d}" if task.label_offset else ""
    for value, n in outside.most_common():
        problems.append(
            f"{n} record(s) of {data} have label {value}{offset}, not a class of the task ({known})"
        )
    return problems


def _render(task: tasks.TaskSpec, median: float) -> tuple[list[str], list[str]]:
    """(problems, report lines): every prompt kind rendered for every class."""
    import numpy as np  # here, not at the top: keeps `wasp-jax --help` fast

    from wasp_jax.config import SelectionConfig
    from wasp_jax.pipeline.stages import prompts  # rendering only: no models

    s = SelectionConfig().s
    sample = " ".join(["word"] * max(1, round(median)))
    examples = [sample] * s
    rng = np.random.default_rng(0)
    kinds = {
        "zero-shot": lambda c: prompts.zero_shot_prompt(task, c),
        "contrastive": lambda c: prompts.contrastive_prompts(
            task, c, examples, examples, s=s, num_variants=1, rng=rng
        )[0],
        "non-contrastive": lambda c: prompts.plain_prompts(
            task, c, examples, num_variants=1, rng=rng
        )[0],
        "aug-pe": lambda c: prompts.aug_pe_prompts(task, c, [sample], task.aug_pe_styles[0])[0],
    }
    if task.subject_prompt:
        kinds["zero-shot with subject"] = lambda c: prompts.zero_shot_prompt(
            task, c, "Some Subject"
        )
    problems = []
    lines = [f"  prompts for every class ({s} dummy examples of {max(1, round(median))} words):"]
    for kind, render in kinds.items():
        rendered = [render(c) for c in range(task.num_classes)]
        left = sorted(
            {p for t in rendered for p in tasks.placeholders_in(t)} & {*tasks.PLACEHOLDERS}
        )
        if left:
            problems.append(f"{kind} prompts still hold {left} after rendering")
        chars = [len(t) for t in rendered]
        words = [len(t.split()) for t in rendered]
        lines.append(
            f"    {kind}: {_span(chars)} chars, {_span(words)} words"
            f" (about {round(1.3 * max(words))} tokens at most)"
        )
    return problems, lines


def _span(xs: list[int]) -> str:
    return f"{min(xs)}" if min(xs) == max(xs) else f"{min(xs)}-{max(xs)}"


def check(task: tasks.TaskSpec, data: str) -> tuple[list[str], list[str], list[str]]:
    """(problems, warnings, report lines) of `task` against the data file `data`."""
    try:
        raw = [
            row for _, row in data_io.read_records(data, what="data", label_field=task.label_field)
        ]
    except DataError as err:
        return [str(err)], [], []
    if not raw:
        return [f"data file {data!r} holds no records; it needs one JSON object a line"], [], []
    lines = [
        f"task {task.name!r} ({task.source}): {task.num_classes} classes; {data}: "
        f"{len(raw)} records"
    ]
    problems = _label_problems(task, raw, data)
    rows = []
    if not problems:
        try:
            rows = data_io.read_labeled_jsonl(
                data,
                label_names=task.labels,
                label_field=task.label_field,
                label_offset=task.label_offset,
                what="data",
            )
        except DataError as err:
            problems.append(str(err))
    warnings = []
    if rows:
        counts = collections.Counter(r["label"] for r in rows)
        for i, name in enumerate(task.labels):
            lines.append(f"  {i} = {name!r} (label word {task.label_words[i]!r}): {counts[i]}")
            if not counts[i]:
                warnings.append(f"class {i} ({name!r}) has no samples in {data}")
    template_problems, template_warnings = tasks.check_templates(task)
    problems += template_problems
    warnings += template_warnings
    texts = [r["text"] for r in raw if isinstance(r.get("text"), str) and r["text"].strip()]
    median = statistics.median(len(t.split()) for t in texts) if texts else 0
    if all(isinstance(w, str) and w.strip() for w in task.label_words):  # else fill() fails
        render_problems, render_lines = _render(task, median)
        lines += render_lines
        problems += render_problems if not template_problems else []
    lines.append(
        f"  data median length {median:g} words; the task keeps texts of "
        f"{task.min_words}-{task.max_words or 'any'} words, generates "
        f"{task.min_new_tokens}-{task.max_new_tokens} new tokens"
    )
    if task.min_words > median:
        warnings.append(
            f"min_words={task.min_words} exceeds the data's median length ({median:g} "
            "words): most generated texts of that length would be dropped"
        )
    if task.max_words and task.max_words < median:
        warnings.append(
            f"max_words={task.max_words} is below the data's median length "
            f"({median:g} words): most generated texts would be cut"
        )
    if task.max_new_tokens < 1.3 * median:
        warnings.append(
            f"max_new_tokens={task.max_new_tokens} is short for the data's median "
            f"length of {median:g} words (about {1.3 * median:.0f} tokens)"
        )
    return problems, warnings, lines


def main_check_task(args: argparse.Namespace) -> int:
    try:
        task = tasks.load_task(args.task)
    except TaskError as err:
        raise UsageError(str(err)) from None
    problems, warnings, lines = check(task, args.data)
    if lines:
        print("\n".join(lines))
    for w in warnings:
        print(f"wasp-jax check-task: warning: {w}", file=sys.stderr)
    for p in problems:
        print(f"wasp-jax check-task: error: {p}", file=sys.stderr)
    if problems:
        return 2
    print(f"{args.task}: OK for {args.data}" + (f" ({len(warnings)} warnings)" if warnings else ""))
    return 0

"""Tests for wasp_jax.tasks: built-in specs, user task files, clear errors."""

import json

import pytest

from wasp_jax import tasks

ORIGINAL_POSITIVE_INSTRUCTION = (
    "\nBased on the above examples of bad and good movie reviews in positive sentiment, analyze the"
    " differences between the bad and good reviews. Generate a new positive movie review that is"
    " diverse in expression compared to the given good reviews. Ensure that the new review is"
    " further refined than the good reviews while maintaining the positive sentiment and clarity,"
    " making the good reviews appear to lie midway between the new review and the bad reviews."
    ' The new positive movie review is: "'
)


def test_builtins_load():
    names = tasks.builtin_tasks()
    assert {"imdb", "yelp_category", "yelp_rating", "sst2"} <= set(names)
    for name in names:
        spec = tasks.load_task(name)
        assert spec.num_classes >= 2
        assert spec.contrastive_instruction.endswith('"')


def test_imdb_matches_algorithm_and_label_convention():
    spec = tasks.load_task("imdb")
    assert spec.labels == ("negative", "positive")  # shared data: 0 = negative, 1 = positive
    assert spec.bad_prefix == "A bad movie review is: "
    assert spec.good_prefix == "A good movie review is: "
    pos = spec.contrastive_instruction.replace("{label_word}", spec.label_words[1])
    assert pos == ORIGINAL_POSITIVE_INSTRUCTION
    assert spec.min_new_tokens == 10 and spec.max_new_tokens == 100


def test_yelp_rating_label_field():
    spec = tasks.load_task("yelp_rating")
    assert spec.num_classes == 5
    assert spec.label_of({"label": 8, "rating": 5}) == 4


def test_user_task_file(tmp_path):
    f = tmp_path / "spam.json"
    f.write_text(json.dumps(_spam()))
    spec = tasks.load_task(str(f))
    assert spec.name == "spam" and spec.label_words == ("ham", "spam")


def test_errors(tmp_path):
    with pytest.raises(tasks.TaskError, match="built-in tasks: .*imdb"):
        tasks.load_task("imbd")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(tasks.TaskError, match="not valid JSON"):
        tasks.load_task(str(bad))
    bad.write_text(json.dumps({"name": "x", "labels": ["a", "b"]}))
    with pytest.raises(tasks.TaskError, match="missing field 'zero_shot'"):
        tasks.load_task(str(bad))


def _spam(**changes):
    d = {
        "name": "spam",
        "labels": ["ham", "spam"],
        "zero_shot": {"prompt": 'A {label_word} e-mail: "'},
        "contrastive": {
            "bad_prefix": "B: ",
            "good_prefix": "G: ",
            "instruction": '{label_word}: "',
        },
        "non_contrastive": {"prefix": "E: ", "instruction": 'More {label_word}: "'},
        "aug_pe": {"prompt": "Rephrase {style}: {sample}\n", "styles": ["briefly"]},
    }
    for key, value in changes.items():
        section, _, field = key.partition(".")
        if field:
            d[section] = dict(d[section], **{field: value})
        else:
            d[section] = value
    return d


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"contrastive.instruction": 'New: "'}, "contrastive.instruction lacks {label_word}"),
        ({"zero_shot.prompt": 'An e-mail: "'}, "zero_shot.prompt lacks {label_word}"),
        (
            {"non_contrastive.instruction": '{label_word} {unknown_ph}: "'},
            r"unknown placeholder\(s\) \['unknown_ph'\]",
        ),
        ({"labels": ["ham", "Ham"]}, "occur twice"),
        ({"min_word": 3}, "unknown field 'min_word'; did you mean 'min_words'"),
        (
            {"zero_shot.promt": "x"},
            "unknown field 'zero_shot.promt'; did you mean 'zero_shot.prompt'",
        ),
        ({"max_new_tokens": float("nan")}, "'max_new_tokens' must be a finite whole number"),
        ({"min_words": float("inf")}, "'min_words' must be a finite whole number"),
        ({"max_new_tokens": "64"}, "'max_new_tokens' must be a whole number"),
        ({"max_new_tokens": 0}, "'max_new_tokens' must be >= 1"),
    ],
)
def test_one_validation_refuses_what_check_task_refuses(tmp_path, changes, message):
    """load_task (what run, demo, check-task and the Python API read) refuses broken
    prompts, duplicate labels, unknown fields and non-finite numbers, naming the field."""
    f = tmp_path / "spam.json"
    f.write_text(json.dumps(_spam(**changes)))  # NaN and Infinity as JSON writes them
    with pytest.raises(tasks.TaskError, match=message):
        tasks.load_task(str(f))
    assert tasks.load_task(str(_write(tmp_path / "ok.json", _spam()))).name == "spam"


def _write(path, d):
    path.write_text(json.dumps(d))
    return path


PAPER_TASKS = {"banking": 10, "openreview_area": 12, "openreview_rating": 5}


@pytest.mark.parametrize("name", sorted(PAPER_TASKS))
def test_the_papers_other_tasks_are_built_in_and_pass_check_task(name, tmp_path, capsys):
    """Banking and the two OpenReview tasks: built in, with the original lengths, and
    check-task passes on a small handmade file (no data for them ships)."""
    from wasp_jax import cli

    task = tasks.load_task(name)
    assert name in tasks.builtin_tasks() and task.num_classes == PAPER_TASKS[name]
    lengths = (10, 100) if name == "banking" else (30, 300)
    assert (task.min_new_tokens, task.max_new_tokens) == lengths
    words = "the reviewer found the method clear and the experiments thorough enough today"
    rows = [
        {"text": f"{words} {c} {i}", "label": c} for c in range(task.num_classes) for i in range(2)
    ]
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert cli.main(["check-task", name, "--data", str(data)]) == 0
    assert f"{name}: OK for" in capsys.readouterr().out

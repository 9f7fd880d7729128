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
    d = {
        "name": "spam",
        "labels": ["ham", "spam"],
        "zero_shot": {"prompt": 'A {label_word} e-mail: "'},
        "contrastive": {"bad_prefix": "Bad: ", "good_prefix": "Good: ", "instruction": 'New: "'},
        "non_contrastive": {"prefix": "E-mail: ", "instruction": 'Another: "'},
        "aug_pe": {"prompt": "Rephrase {style}: {sample}\n", "styles": ["briefly"]},
    }
    f = tmp_path / "spam.json"
    f.write_text(json.dumps(d))
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

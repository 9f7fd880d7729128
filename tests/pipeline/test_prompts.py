"""Tests for wasp_jax.pipeline.stages.prompts:
contrastive/plain/Aug-PE prompts and post-processing."""

import numpy as np
import pytest

from wasp_jax.pipeline.run.population import normalize
from wasp_jax.pipeline.stages import prompts as P
from wasp_jax.tasks import load_task

TASK = load_task("imdb")


def test_contrastive_layout():
    good = [f"good {i} {{braces}}" for i in range(8)]
    bad = [f"bad {i}" for i in range(8)]
    rng = np.random.default_rng(0)
    variants = P.contrastive_prompts(TASK, 1, good, bad, s=8, num_variants=6, rng=rng)
    assert len(variants) == 6 and len(set(variants)) > 1
    for v in variants:
        lines = v.split("\n")
        assert [ln.startswith("A bad movie review is: bad ") for ln in lines[:4]] == [True] * 4
        assert [ln.startswith("A good movie review is: good ") for ln in lines[4:8]] == [True] * 4
        assert len(set(lines[:8])) == 8  # distinct examples
        assert "{braces}" in v  # example texts are not format-interpreted
        assert v.endswith('The new positive movie review is: "')
        assert "Based on the above examples of bad and good movie reviews in positive" in v


def test_contrastive_with_few_examples_uses_what_exists():
    rng = np.random.default_rng(1)
    (v,) = P.contrastive_prompts(TASK, 0, ["g1"], ["b1", "b2"], s=8, num_variants=1, rng=rng)
    assert v.count("A bad movie review is: ") == 2 and v.count("A good movie review is: ") == 1
    assert "negative sentiment" in v


def test_plain_and_aug_pe_and_zero_shot():
    rng = np.random.default_rng(2)
    (v,) = P.plain_prompts(TASK, 0, ["a b", "c d"], num_variants=1, rng=rng)
    assert v.count("The movie review is: ") == 2 and v.endswith('is: "')
    ps = P.aug_pe_prompts(TASK, 1, ["seed one", "seed two"], "in a casual way")
    assert len(ps) == 2 and "seed two" in ps[1] and "in a casual way" in ps[0]
    assert P.zero_shot_prompt(TASK, 1, "Jaws") == (
        'The movie review in positive sentiment for movie "Jaws" is: "'
    )
    assert P.zero_shot_prompt(TASK, 0) == 'The movie review in negative sentiment is: "'


@pytest.mark.parametrize(
    "raw,expected",
    [
        (
            '  A fine film with a lot of heart and soul.  " trailing',
            "A fine film with a lot of heart and soul.",
        ),
        (
            "one two three four five six seven eight nine ten\nmore",
            "one two three four five six seven eight nine ten",
        ),
        (
            "one two three four five six seven eight nine ten. eleven twelve",
            "one two three four five six seven eight nine ten.",
        ),
        ("too short.", None),
        ("", None),
        ("a  b\tc d e f g h i j k", "a b c d e f g h i j k"),
    ],
)
def test_clean_generation(raw, expected):
    assert P.clean_generation(raw, min_words=10) == expected


def test_clean_generation_max_words_and_normalize():
    text = " ".join(f"w{i}" for i in range(30)) + "."
    assert P.clean_generation(text, min_words=1, max_words=5) == "w0 w1 w2 w3 w4"
    assert normalize("  Hello\n  World ") == normalize("hello world")

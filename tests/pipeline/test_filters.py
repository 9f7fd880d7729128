"""Each filter for generated text drops what it should, keeps what it should, and is counted
in the generation result and in metrics.jsonl."""

import json

import jax
import numpy as np
import pytest
from test_runner import hooks, small_config

from wasp_jax import config as C
from wasp_jax.data import shared_data_dir
from wasp_jax.pipeline.run import runner
from wasp_jax.pipeline.stages import filters, generation
from wasp_jax.tasks import load_task

TASK = load_task("imdb")
LONG = "This film has a warm heart, sharp dialogue and a lovely ending that works."


@pytest.mark.parametrize(
    "text,why",
    [
        ("   ", "empty"),
        ("Too short.", "too_short"),
        ("A bad movie review is: " + LONG, "prompt_leak"),
        ("The movie review in positive sentiment is: " + LONG, "prompt_leak"),
        (LONG + " The new negative movie review is: bleak.", "prompt_leak"),
        (LONG, "duplicate"),
        (LONG.upper(), "duplicate"),
        (LONG.replace(",", "").replace(".", "!"), "near_duplicate"),
        (LONG.replace("warm", "cold"), None),
    ],
)
def test_each_filter(text, why):
    f = filters.TextFilter(
        TASK, {"this film has a warm heart, sharp dialogue and a lovely ending that works."}
    )
    clean, reason = f.reason(text)
    assert reason == why, (text, reason)
    assert (clean is None) == (why is not None)


def test_leak_markers_need_several_words():
    markers = filters.leak_markers(TASK)
    assert "a bad movie review is" in markers and "a good movie review is" in markers
    assert all(len(m.split()) >= filters.LEAK_WORDS for m in markers)
    f = filters.TextFilter(TASK, set())
    # ordinary words of the templates ("movie review") alone are not a leak
    assert f.reason("I wrote a movie review about this bad film, it is long and dull.")[1] is None


TAIL = " The acting is solid and the plot keeps you guessing until the very end."


@pytest.mark.parametrize(
    "text,rule",
    [
        # verbatim template runs
        ("The new positive movie review is: " + LONG, "verbatim"),
        # scaffolding at the start, paraphrased
        ("The good example of a card about to expire is: a warm film.", "scaffold"),
        ("Here is a good example of a positive movie review:" + TAIL, "scaffold"),
        ("Here's a short review of the film you asked about." + TAIL, "scaffold"),
        ("Bad example: the film drags on and never finds its footing.", "scaffold"),
        ("Good example:" + TAIL, "scaffold"),
        ("A bad example of a review would be this one." + TAIL, "scaffold"),
        ("Sure! Here's a review of the film you asked me for." + TAIL, "scaffold"),
        ("Certainly, here is what I thought of the film." + TAIL, "scaffold"),
        ("Example 3:" + TAIL, "scaffold"),
        ("Another example:" + TAIL, "scaffold"),
        ("The following is a positive movie review:" + TAIL, "scaffold"),
        ("Write a positive review of this film that is short and sweet." + TAIL, "scaffold"),
        ("Please rephrase the following sentences in a casual way." + TAIL, "scaffold"),
        ("(positive)" + TAIL, "scaffold"),
        ("Positive:" + TAIL, "scaffold"),
        ("Negative review:" + TAIL, "scaffold"),
        ("As an AI language model, I cannot watch films." + TAIL, "scaffold"),
        # a label word next to "example", anywhere
        (TAIL + " All in all this is a positive example of the genre.", "label_example"),
        # paraphrased template sentences
        ("Based on the examples above, a new positive movie review is this one." + TAIL, "fuzzy"),
        ("The review with positive sentiment for this movie is:" + TAIL, "fuzzy"),
        (TAIL + " Make the good reviews appear to lie midway between the new and bad ones.",
         "fuzzy"),
    ],
)  # fmt: skip
def test_paraphrased_prompt_leaks_are_caught(text, rule):
    assert filters.leak_rule(TASK, text) == rule
    assert filters.TextFilter(TASK, set()).reason(text)[1] == "prompt_leak"


@pytest.mark.parametrize(
    "text",
    [
        # template words used as reviewers use them
        "This example of bad acting is everywhere, from the lead to the extras." + TAIL,
        "This is a good example of how to ruin a book in two hours." + TAIL,
        "I thought this to be a pretty good example of a soft core thriller." + TAIL,
        "Another example of a sequel that nobody asked for, and it shows." + TAIL,
        "The best example of the genre since the seventies, and a joy." + TAIL,
        TAIL + " Sadly it is also a good example of how not to end a film.",
        "Sure, the acting is bad, but the story is fun and the music is great." + TAIL,
        "I read many negative reviews of this movie before I saw it." + TAIL,
        "Despite the positive reviews for this movie, I found it dull." + TAIL,
        "Here is a movie that tries to be everything at once and fails." + TAIL,
        "I just had to write a review of this movie because it was that bad." + TAIL,
        "Good: the music. Bad: everything else about this film, from start to end.",
        "Negative, for example, is how I would describe my mood after the film." + TAIL,
    ],
)
def test_near_misses_are_kept(text):
    assert filters.leak_rule(TASK, text) is None


def test_leak_rules_use_the_task_s_own_words():
    task = load_task("yelp_category")
    assert filters.leak_rule(task, "Restaurants:" + TAIL) == "scaffold"
    text = "A review of a business in the Bars category: great drinks and fun staff all night."
    assert filters.leak_rule(task, text) == "fuzzy"
    text = "Here is a new business review about a bar: great drinks and friendly staff."
    assert filters.leak_rule(task, text) == "scaffold"
    text = "Restaurants, for example, are few here, but the bars are great and friendly."
    assert filters.leak_rule(task, text) is None
    assert filters.leak_rule(load_task("yelp_rating"), "5 stars example: great food.") == (
        "scaffold"
    )


def test_fuzzy_pieces_are_template_sentences_and_clauses():
    pieces = {p for p, _, _ in filters.fuzzy_pieces(TASK)}
    assert ("bad", "movie", "review") in pieces  # "A bad movie review is: "
    for piece, need, window in filters.fuzzy_pieces(TASK):
        assert len(piece) >= filters.FUZZY_MIN_CONTENT and len(set(piece)) == len(piece)
        assert need >= filters.FUZZY_SHARE * len(piece) and window > need
        assert not set(piece) & filters.STOP_WORDS


REAL = {"imdb": "imdb", "sst2": "sst2", "yelp_category": "yelp", "yelp_rating": "yelp"}


@pytest.mark.parametrize("task_name", sorted(REAL))
def test_real_texts_are_rarely_flagged_as_leaks(task_name):
    path = shared_data_dir() / REAL[task_name] / "train.jsonl"
    if not path.exists():
        pytest.skip(f"no shared data at {path}")
    texts = []
    with path.open() as f:
        for line in f:
            texts.append(json.loads(line)["text"])
            if len(texts) == 500:
                break
    task = load_task(task_name)
    flagged = [t for t in texts if filters.leak_rule(task, t) is not None]
    assert len(flagged) < 0.01 * len(texts), flagged[:5]


class Scripted:
    """Returns the scripted continuations, in order, whatever the prompt."""

    def __init__(self, texts):
        self.texts = list(texts)

    def generate(self, prompts, *, num_samples=1, key, progress=False, **kw):
        out = []
        for _ in prompts:
            row = [self.texts.pop(0) if self.texts else "" for _ in range(num_samples)]
            out.append(row)
        return out


def test_generate_quotas_counts_every_filter():
    texts = [
        "",
        "Tiny.",
        "A good movie review is: " + LONG,
        LONG,
        LONG + " ",
        LONG.replace(".", "!"),
        LONG.replace("warm", "big"),
    ]
    g = C.replace(C.base_config(), **{"generation.batch_size": 8, "generation.max_attempts": 1})
    res = generation.generate_quotas(
        Scripted(texts),
        [["prompt"]],
        [3],
        generation=g.generation,
        task=TASK,
        key=jax.random.key(0),
        rng=np.random.default_rng(0),
        seen=set(),
    )[0]
    assert res.texts == [LONG, LONG.replace("warm", "big")]
    assert res.shortfall == 1
    # 8 continuations (batch_size): the 7 scripted, then "" (empty)
    assert res.filtered == {
        "empty": 2, "too_short": 1, "prompt_leak": 1, "duplicate": 1, "near_duplicate": 1,
    }  # fmt: skip


def test_metrics_rows_carry_filter_counts(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "_finish", lambda *a: None)
    runner.run(small_config(), tmp_path, hooks=hooks())
    rows = [
        json.loads(x) for x in (tmp_path / "release" / "metrics.jsonl").read_text().splitlines()
    ]
    assert all(set(r["filtered"]) == set(filters.REASONS) for r in rows)
    # the fake generator writes "short" 15 % of the time: dropped as too short, and counted
    assert sum(r["filtered"]["too_short"] for r in rows) > 0
    assert filters.describe({"too_short": 3, "prompt_leak": 1}) == "3 too short, 1 prompt leaks"

"""Each filter for generated text drops what it should, keeps what it should, and is counted
in the generation result and in metrics.jsonl."""

import json

import jax
import numpy as np
import pytest
from test_runner import hooks, small_config

from wasp_jax import config as C
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

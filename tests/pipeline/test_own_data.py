"""`wasp-jax run --task --private --test`: the flags, the budget sized for the task, the sizing
refusals and warnings, and the log line of every config value that overrides the task."""

import json
import logging
import pathlib
import warnings

import pytest
from test_cli import fake_runner, run_cli, write_lines  # noqa: F401 (fixture)
from test_runner import hooks, small_config

from wasp_jax import config as C
from wasp_jax.errors import ConfigError, DataWarning
from wasp_jax.pipeline import methods
from wasp_jax.pipeline.run import runner, sizing


def four_class_data(tmp_path, n_per_class=25):
    """A 4-class private set and a matching task (from the built-in yelp_category)."""
    import wasp_jax

    spec_path = wasp_jax.tasks.__file__.replace("tasks.py", "tasks/yelp_category.json")
    spec = json.loads(open(spec_path).read())
    spec.update(name="four", labels=spec["labels"][:4], label_words=spec["label_words"][:4])
    task = tmp_path / "four.json"
    task.write_text(json.dumps(spec))
    rows = [
        json.dumps({"text": f"review number {i} of kind {c} with words", "label": c})
        for c in range(4)
        for i in range(n_per_class)
    ]
    return task, write_lines(tmp_path / "p.jsonl", rows)


def test_task_and_private_flags_size_the_budget(tmp_path, capsys, fake_runner):  # noqa: F811
    task, private = four_class_data(tmp_path)
    test = write_lines(tmp_path / "t.jsonl", ['{"text": "a bar", "label": 1}'])
    argv = [
        "run",
        "--task",
        task,
        "--private",
        private,
        "--test",
        test,
        "--workdir",
        tmp_path / "w",
    ]
    rc, _, err = run_cli(argv, capsys)
    assert rc == 0, err
    cfg = fake_runner[-1]["cfg"]
    assert cfg.task == str(task) and cfg.data.private_path == str(private)
    assert cfg.eval.test_path == str(test) and cfg.method == "wasp"
    # the first vote must see 2 S = 16 per class over 4 classes: N_0 = 64, T = 2 -> 192
    assert cfg.generation.budget == 192
    assert sizing.first_vote_per_class(cfg, 4) == 16
    assert "generation.budget=192 (raised from 48" in err
    # the task's own decoding lengths are kept (the demo's 8/32 are not carried over)
    assert cfg.generation.max_new_tokens is None and cfg.generation.min_new_tokens is None


def test_set_beats_flags_and_a_chosen_budget_is_kept(tmp_path, capsys, fake_runner):  # noqa: F811
    task, private = four_class_data(tmp_path)
    argv = ["run", "--task", task, "--private", private, "--workdir", tmp_path / "w",
            "--set", "generation.budget=160", "--set", "selection.s=4"]  # fmt: skip
    rc, _, err = run_cli(argv, capsys)
    assert rc == 0, err
    assert fake_runner[-1]["cfg"].generation.budget == 160 and "raised" not in err


def test_flags_override_a_config_file(tmp_path, capsys, fake_runner):  # noqa: F811
    task, private = four_class_data(tmp_path)
    argv = ["run", "--config", "experiments/configs/wasp_imdb.py", "--private", private,
            "--task", task, "--set", "generation.budget=200",
            "--test", "", "--workdir", tmp_path / "w"]  # fmt: skip
    rc, _, err = run_cli(argv, capsys)
    assert rc == 0, err
    cfg = fake_runner[-1]["cfg"]
    assert cfg.data.private_path == str(private) and cfg.eval.test_path == ""
    assert cfg.task == str(task) and cfg.generation.budget == 200


def test_run_without_config_or_task(tmp_path, capsys, fake_runner):  # noqa: F811
    rc, _, err = run_cli(["run", "--workdir", tmp_path / "w"], capsys)
    assert rc == 2 and "--task TASK --private" in err and not fake_runner


def test_too_small_budget_is_refused_with_the_smallest_that_works(tmp_path, capsys, fake_runner):  # noqa: F811
    task, private = four_class_data(tmp_path)
    argv = ["run", "--task", task, "--private", private, "--workdir", tmp_path / "w",
            "--set", "generation.budget=48"]  # fmt: skip
    rc, _, err = run_cli(argv, capsys)
    assert rc == 2 and not fake_runner
    assert (
        "fewer than voting.q=8" in err and "smallest generation.budget that gives it is 96" in err
    )
    assert not (tmp_path / "w").exists()


def _check_sizing(cfg, num_classes):
    return sizing.check_sizing(cfg, num_classes, methods.resolve(cfg).first_vote_need(cfg))


def test_sizing_rules():
    cfg = C.replace(small_config(), **{"generation.budget": 96, "generation.rounds": 2})
    assert sizing.first_vote_per_class(cfg, 4) == 8
    # 8 per class = q: works, but 2 S = 8 < ... with S = 4 it is exactly full and disjoint
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _check_sizing(C.replace(cfg, **{"selection.s": 4, "voting.q": 8}), 4)
    with pytest.warns(DataWarning, match=r"fewer than 16 \(S=8 good and S=8 bad"):
        _check_sizing(C.replace(cfg, **{"selection.s": 8, "voting.q": 8}), 4)
    with pytest.raises(ConfigError, match="smallest generation.budget that gives it is 120"):
        _check_sizing(C.replace(cfg, **{"voting.q": 10}), 4)
    held = C.replace(cfg, **{"voting.valid_fraction": 0.5, "voting.q": 8, "selection.s": 4})
    with pytest.raises(ConfigError, match="0.5 held out.*is 192"):
        _check_sizing(held, 4)
    fixed = C.replace(cfg, **{"generation.initial": 8, "voting.q": 8})
    with pytest.raises(ConfigError, match="raise generation.initial to at least 32"):
        _check_sizing(fixed, 4)
    # nothing is selected in the zero-shot baselines
    zero = C.replace(cfg, **{"method": "multi_zeroshot", "generation.rounds": 0})
    assert _check_sizing(zero, 4) == 0
    # the random control needs no q, only its 2 S disjoint draws
    control = C.replace(cfg, **{"method": "random_control", "voting.q": 50, "selection.s": 4})
    assert _check_sizing(control, 4) == 8


def test_library_run_refuses_before_writing(tmp_path):
    with pytest.raises(ConfigError, match="too small"):
        runner.run(small_config(**{"voting.q": 20}), tmp_path / "w", hooks=hooks())
    assert not (tmp_path / "w").exists()


def test_values_overriding_the_task_are_logged_once(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(runner, "_finish", lambda *a: None)
    cfg = small_config(**{"generation.max_new_tokens": 32, "generation.min_new_tokens": None})
    with caplog.at_level(logging.INFO, logger="wasp_jax"):
        runner.run(cfg, tmp_path, hooks=hooks())
    lines = [r.getMessage() for r in caplog.records if "overrides the task" in r.getMessage()]
    assert lines == [
        "generation.max_new_tokens=32 overrides the task's max_new_tokens=100 "
        "(--set generation.max_new_tokens=none keeps the task's)"
    ]


@pytest.mark.parametrize("only_private", [False, True])
def test_evaluation_scores_the_baselines_on_the_same_test(tmp_path, monkeypatch, only_private):
    from wasp_jax.data import atomic_write_jsonl, bundled_path, read_labeled_jsonl
    from wasp_jax.pipeline.stages import evaluation

    calls = []
    score = {"mean": 0.5, "std": 0.1, "per_seed": [0.4, 0.5, 0.6]}

    def files(train, test, *, out=None, **kw):
        rows = [json.loads(x) for x in pathlib.Path(train).read_text().splitlines()]
        calls.append(("files", pathlib.Path(train).name, test, kw, rows))
        res = {"accuracy": score, "macro_f1": score, "mode": kw["mode"], "seeds": kw["seeds"]}
        if out is not None:
            pathlib.Path(out).write_text(json.dumps(res))
        return res

    def texts(train_texts, train_labels, test_texts, test_labels, **kw):
        calls.append(("texts", len(train_texts), len(test_texts), kw))
        return {"accuracy": score, "macro_f1": score, "runs": [{"loss": 0.1}]}

    monkeypatch.setattr(evaluation, "evaluate_files", files)
    monkeypatch.setattr(evaluation, "evaluate_texts", texts)
    test = tmp_path / "test.jsonl"
    atomic_write_jsonl(test, read_labeled_jsonl(bundled_path("imdb", "test.jsonl"))[:40])
    cfg = small_config(**{"eval.test_path": str(test), "eval.only_private": only_private,
                          "eval.max_test": 30})  # fmt: skip
    runner.run(cfg, tmp_path / "w", hooks=hooks())
    wd = tmp_path / "w"
    # every training set is also scored on 3 subsample draws (one seed each, same test rows)
    draws = [c for c in calls if c[0] == "files" and ".draw" in c[1]]
    assert [c[1] for c in draws] == [
        f"{stem}.draw{i}.jsonl"
        for stem in ("synthetic", "zero_shot_start", "zero_shot_equal")
        for i in range(3)
    ]
    assert [c[3]["seeds"] for c in draws] == [[0], [1], [2]] * 3
    assert all(c[3]["max_test"] == 30 for c in draws)
    calls = [c for c in calls if c not in draws]
    kinds = [c[0] for c in calls]
    assert kinds == ["files", "files", "files"] + (["texts"] if only_private else [])
    assert calls[0][1] == "synthetic.jsonl" and calls[1][1] == "zero_shot_start.jsonl"
    assert calls[2][1] == "zero_shot_equal.jsonl"
    assert {r["round"] for r in calls[1][4]} == {0} and len(calls[1][4]) == 12
    assert calls[0][3]["seeds"] == calls[1][3]["seeds"] == calls[2][3]["seeds"] == [0, 1, 2]
    assert calls[0][3]["max_test"] == calls[1][3]["max_test"] == calls[2][3]["max_test"] == 30
    n_syn, n_equal = len(calls[0][4]), len(calls[2][4])
    assert calls[2][4][:12] == calls[1][4] and abs(n_equal - n_syn) <= 4  # round 0, topped up
    base = json.loads((wd / "release" / "eval_baselines.json").read_text())
    assert base["zero-shot start"]["dp"] is True and base["zero-shot start"]["n_train"] == 12
    assert base["zero-shot (equal size)"]["n_train"] == n_equal
    # OnlyPrivate is a statistic of the private data without noise: private/ only
    assert "OnlyPrivate (not DP)" not in base
    assert not any("OnlyPrivate" in p.read_text() for p in (wd / "release").glob("*.json"))
    only = wd / "private" / "eval_only_private.json"
    if only_private:
        assert calls[3][1] == 24 and calls[3][2] == 30  # the run's 24 private texts, same 30
        row = json.loads(only.read_text())["OnlyPrivate (not DP)"]
        assert row["dp"] is False and "runs" not in row
    else:
        assert not only.exists()
    text = (wd / "release" / "report.md").read_text()
    assert "zero-shot start" in text and "50.0 ± 10.0" in text


def test_progress_shows_samples_of_the_budget_with_an_eta(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(runner, "_finish", lambda *a: None)
    with caplog.at_level(logging.INFO, logger="wasp_jax"):
        runner.run(small_config(), tmp_path, hooks=hooks())
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("progress:")]
    assert len(lines) == 6  # after each of the 2 x 3 generation stages
    # round 0's pace says nothing of the longer contrastive prompts: no number until round 1
    assert lines[0] == (
        "progress: 6 of 36 samples (17%), time left known once round 1 has started "
        "(its prompts are longer)"
    )
    assert "of generation left" in lines[2]  # round 1's first PLM measured the voted pace
    assert lines[-1] == "progress: 36 of 36 samples (100%)"


def test_eta_from_the_pace_of_each_kind_of_row():
    """A schedule like a recorded IMDb run (round 0: 40 rows in 180 s, compile included;
    round 1: 40 rows at 7.5 s a row; then 40 baseline rows at round 0's pace): all rows at
    the pace so far would say 180 s left after round 0, against 480 s; this gives no number
    there, and after round 1's first PLM it is within 5 % of the truth."""
    from wasp_jax.pipeline.run.commit import eta_seconds

    zero = [("zero", 20, 100.0), ("zero", 20, 80.0)]  # the first stage compiled
    assert eta_seconds(zero, zero_left=40, voted_left=40) is None
    first = zero + [("voted", 17, 17 * 7.5)]
    truth = 23 * 7.5 + 40 * 4.5  # the rest of round 1, then the baseline at round 0's pace
    got = eta_seconds(first, zero_left=40, voted_left=23)
    assert abs(got - truth) / truth < 0.05
    assert eta_seconds(first, zero_left=0, voted_left=0) == 0.0
    assert eta_seconds([], zero_left=10, voted_left=0) is None

"""`wasp-jax run/demo/report`: every bad input gives exit code 2, a clear
one-line message and nothing written; good input reaches the runner (a fake one here, so the
test needs no models) and prints the summary."""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import types

import pytest

import wasp_jax
import wasp_jax.cli.pipeline as pipeline_cli
from wasp_jax import cli
from wasp_jax.data import atomic_write_json, atomic_write_jsonl
from wasp_jax.outputs import datasheet, report
from wasp_jax.pipeline.run import workdir
from wasp_jax.pipeline.run import workdir as workdir_lib

REPO = pathlib.Path(__file__).resolve().parents[2]
WASP_IMDB = str(REPO / "experiments" / "configs" / "wasp_imdb.py")
NO_EVAL = ["--set", "eval.test_path="]  # the base's test set lives in ../shared


@pytest.fixture
def fake_runner(monkeypatch):
    """Replaces wasp_jax.pipeline.run.runner by a fake that writes a small finished run."""
    calls = []

    def run(cfg, workdir, *, force=False):
        calls.append({"cfg": cfg, "workdir": workdir, "force": force})
        workdir_lib.prepare_workdir(cfg, pathlib.Path(workdir), force=force)  # + config.json
        wd = workdir_lib.release_dir(workdir)
        atomic_write_json(
            wd / "privacy.json",
            {"epsilon": cfg.privacy.epsilon, "delta": cfg.privacy.delta, "sigma": 1.2345},
        )
        names = list(cfg.generation.plms)
        atomic_write_jsonl(
            wd / "metrics.jsonl",
            [{"round": r, "plm_names": names, "plm_weights": [0.25, 0.75]} for r in range(2)],
        )
        atomic_write_jsonl(
            wd / "synthetic.jsonl",
            [{"text": "a film", "label": 0, "label_name": "negative", "plm": names[0], "round": 0}],
        )
        datasheet.write_datasheet(wd)
        report.write_report(wd)

    fake = types.ModuleType("wasp_jax.pipeline.run.runner")
    fake.run = run
    monkeypatch.setitem(sys.modules, "wasp_jax.pipeline.run.runner", fake)
    monkeypatch.setattr(wasp_jax.pipeline.run, "runner", fake, raising=False)
    return calls


def run_cli(argv, capsys):
    rc = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


GOOD = '{"text": "fine", "label": 0}'
BAD_PRIVATE = {
    "malformed": ([GOOD, '{"text": "x", "label": 1', GOOD], "line 2: not valid JSON"),
    "missing_label": ([GOOD, '{"text": "no label here"}'], "line 2: missing field(s) ['label']"),
    "missing_text": (['{"label": 1}'], "line 1: missing field(s) ['text']"),
    "empty_text": ([GOOD, GOOD, '{"text": "   ", "label": 1}'], 'line 3: "text" is empty'),
    "invisible_text": (
        [GOOD, '{"text": " \\u200b \\ufeff", "label": 1}'],
        'line 2: "text" is empty',
    ),
    "lone_surrogate": ([GOOD, '{"text": "ok \\ud800", "label": 0}'], "not valid Unicode"),
    "label_outside": ([GOOD, '{"text": "x", "label": 5}'], "label 5 is outside the task"),
    "label_not_int": (['{"text": "x", "label": 1.5}'], "label must be an int"),
    "flipped_convention": (
        ['{"text": "x", "label": 0, "label_name": "positive"}'],
        "another label convention",
    ),
    "empty_file": ([], "holds no records"),
}


@pytest.mark.parametrize("case", sorted(BAD_PRIVATE))
def test_bad_private_file_exit_2_and_nothing_written(case, tmp_path, capsys, fake_runner):
    lines, expected = BAD_PRIVATE[case]
    bad = write_lines(tmp_path / "private.jsonl", lines)
    wd = tmp_path / "wd"
    argv = ["run", "--config", WASP_IMDB, "--workdir", wd, "--set", f"data.private_path={bad}"]
    rc, _, err = run_cli(argv + NO_EVAL, capsys)
    assert rc == 2
    assert expected in err, err
    assert err.startswith("wasp-jax run: error:") and err.count("\n") == 1
    assert not wd.exists() and not fake_runner
    assert "fine" not in err and "no label here" not in err  # never echo record text


@pytest.mark.parametrize(
    "override, expected",
    [
        ("privacy.epsilon=0", "privacy.epsilon: must be > 0"),
        ("privacy.epsilon=-1", "privacy.epsilon: must be > 0"),
        ("privacy.delta=0", "privacy.delta: must be in (0, 1)"),
        ("privacy.delta=1.5", "privacy.delta: must be in (0, 1)"),
        ("voting.q=abc", "voting.q: expected an integer"),
        ("voting.q=2.5", "voting.q: expected an integer"),
        ("privacy.epsilonn=1", "did you mean 'privacy.epsilon'?"),
        ("voting.qq=1", "did you mean 'voting.q'?"),
        ("voting.q", "must look like key=value"),
        ("data.private_path=/no/such/file.jsonl", "does not exist"),
        ("generation.budget=20", "fewer than voting.q=8"),
        ("task=imdbb", "unknown task 'imdbb'"),
        ("privacy.epsilon=1e400", "too large to represent"),
        ("generation.temperature=inf", "generation.temperature: must be in [0, 10]"),
    ],
)
def test_bad_settings_exit_2(override, expected, tmp_path, capsys, fake_runner):
    wd = tmp_path / "wd"
    rc, _, err = run_cli(["demo", "--workdir", wd, "--set", override], capsys)
    assert rc == 2 and expected in err, err
    assert not wd.exists() and not fake_runner


def test_private_path_is_a_directory(tmp_path, capsys):
    rc, _, err = run_cli(["demo", "--set", f"data.private_path={tmp_path}"], capsys)
    assert rc == 2 and "is a directory" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_unreadable_private_file(tmp_path, capsys):
    path = write_lines(tmp_path / "p.jsonl", [GOOD])
    path.chmod(0)
    rc, _, err = run_cli(["demo", "--set", f"data.private_path={path}"], capsys)
    assert rc == 2 and "not readable" in err


def test_unknown_model_names_the_closest(tmp_path, capsys):
    assert "tiny-bert" in pipeline_cli.known_models("embedder")
    rc, _, err = run_cli(["demo", "--set", "generation.plms=['smolm2-135m-instruct']"], capsys)
    assert rc == 2 and "unknown model" in err and "did you mean 'smollm2-135m-instruct'" in err
    rc, _, err = run_cli(["demo", "--set", "embedder.name=minilm"], capsys)
    assert rc == 2 and "embedder.name: unknown model 'minilm'" in err


def test_bad_config_files(tmp_path, capsys):
    rc, _, err = run_cli(["run", "--config", tmp_path / "none.py", "--workdir", tmp_path], capsys)
    assert rc == 2 and "does not exist" in err
    empty = tmp_path / "empty.py"
    empty.write_text("X = 1\n")
    rc, _, err = run_cli(["run", "--config", empty, "--workdir", tmp_path / "wd"], capsys)
    assert rc == 2 and "get_config" in err


def test_replay_pool_with_fewer_candidates_than_q(tmp_path, capsys, fake_runner):
    pool = write_lines(
        tmp_path / "gpt2.jsonl",
        [f'{{"text": "t{i}", "label": {int(i >= 20)}}}' for i in range(23)],
    )
    argv = ["demo", "--workdir", tmp_path / "wd", "--set", "method=replay"]
    rc, _, err = run_cli(argv + ["--set", f"replay.pools=['{pool}']"], capsys)
    assert rc == 2 and "class 1 ('positive') has 3 candidates, fewer than voting.q=8" in err


def test_class_without_private_samples_warns_and_runs(tmp_path, capsys, fake_runner):
    only_neg = write_lines(tmp_path / "p.jsonl", [GOOD, GOOD])
    argv = ["demo", "--workdir", tmp_path / "wd", "--set", f"data.private_path={only_neg}"]
    rc, out, err = run_cli(argv, capsys)
    assert rc == 0 and len(fake_runner) == 1
    assert "warning: private data has no samples of class 1 ('positive')" in err
    assert "fine" not in err + out


def test_demo_summary_resume_and_workdir_guard(tmp_path, capsys, fake_runner):
    wd = tmp_path / "demo"
    rc, out, err = run_cli(["demo", "--workdir", wd], capsys)
    assert rc == 0, err
    assert "demo finished in" in out and str(wd.resolve()) in out
    assert "epsilon=4.0" in out and "sigma=1.234" in out
    assert "round 1: PLM weights smollm2-135m-instruct=0.25, gemma3-270m=0.75" in out
    for name in ("datasheet.md", "report.md", "plots/plm_weights.png"):
        assert (wd / "release" / name).is_file(), name
    assert str((wd / "release").resolve()) in out and "never share" in out
    # same config again: resumes (no --force needed); result-neutral runtime keys may differ
    rc, _, _ = run_cli(["demo", "--workdir", wd, "--set", "runtime.progress=false"], capsys)
    assert rc == 0 and fake_runner[-1]["force"] is False
    # a different config is refused, naming the differing key, and the runner is not called
    rc, _, err = run_cli(["demo", "--workdir", wd, "--set", "privacy.epsilon=1.0"], capsys)
    assert rc == 2 and "different config" in err and "privacy.epsilon" in err
    assert "--force" in err and len(fake_runner) == 2
    rc, _, _ = run_cli(["demo", "--workdir", wd, "--set", "privacy.epsilon=1.0", "--force"], capsys)
    assert rc == 0 and fake_runner[-1]["force"] is True
    assert fake_runner[-1]["cfg"].privacy.epsilon == 1.0


def test_workdir_that_is_a_file(tmp_path, capsys, fake_runner):
    path = tmp_path / "f"
    path.write_text("x")
    rc, _, err = run_cli(["demo", "--workdir", path], capsys)
    assert rc == 2 and "is a file" in err


def test_run_with_config_file_and_eval_flag(tmp_path, capsys, fake_runner):
    rc, _, err = run_cli(
        ["run", "--config", WASP_IMDB, "--workdir", tmp_path / "w", *NO_EVAL], capsys
    )
    assert rc == 0, err
    assert fake_runner[-1]["cfg"].generation.budget == 600
    rc, _, err = run_cli(["demo", "--eval", "--workdir", tmp_path / "d"], capsys)
    assert rc == 0, err
    assert fake_runner[-1]["cfg"].eval.test_path.endswith("imdb/test.jsonl")


def test_report_command(tmp_path, capsys, fake_runner):
    run_cli(["demo", "--workdir", tmp_path / "wd"], capsys)
    release = tmp_path / "wd" / "release"
    (release / "report.md").unlink()
    rc, out, _ = run_cli(["report", tmp_path / "wd"], capsys)
    assert rc == 0 and (release / "report.md").is_file() and "report.md" in out
    # a copy of the release folder alone is enough
    copy = tmp_path / "handed_over"
    shutil.copytree(release, copy)
    (copy / "report.md").unlink()
    shutil.rmtree(copy / "plots")
    rc, out, _ = run_cli(["report", copy], capsys)
    assert rc == 0 and (copy / "report.md").is_file() and (copy / "plots").is_dir()
    assert str(copy / "report.md") in out
    # while a run holds the workdir, report refuses in one line and rewrites nothing
    from wasp_jax.pipeline.run.lock import workdir_lock

    before = (release / "report.md").stat().st_mtime_ns
    with workdir_lock(tmp_path / "wd"):
        rc, _, err = run_cli(["report", tmp_path / "wd"], capsys)
    assert rc == 2 and "in use by another wasp-jax run" in err and err.count("\n") == 1
    assert (release / "report.md").stat().st_mtime_ns == before
    rc, _, err = run_cli(["report", tmp_path / "wd"], capsys)
    assert rc == 0, err
    rc, _, err = run_cli(["report", tmp_path / "nothing"], capsys)
    assert rc == 2 and "does not exist" in err
    (tmp_path / "half").mkdir()
    rc, _, err = run_cli(["report", tmp_path / "half"], capsys)
    assert rc == 2 and "not a finished run" in err


def test_config_diff_ignores_runtime_and_extra_keys():
    old = {"a": {"b": 1}, "runtime": {"progress": True}, "extra": 3}
    new = {"a": {"b": 2}, "runtime": {"progress": False}}
    assert workdir.config_diff(old, new) == ["a.b"]


def test_a_workdir_of_an_older_version_resumes_when_new_keys_keep_their_defaults():
    """A key a later version added is absent from an older run's config.json: at its default
    it is no difference (the run resumes); set to something else, it is one."""
    from wasp_jax import config as C

    new = C.base_config().to_dict()
    old = C.base_config().to_dict()
    del old["tune"], old["data"]["text_field"]  # as an older version wrote it
    assert workdir.config_diff(old, new) == []
    changed = C.replace(C.base_config(), **{"data.text_field": "review"}).to_dict()
    assert workdir.config_diff(old, changed) == ["data.text_field"]


def test_cli_module_import_is_light():
    code = "import sys, wasp_jax.cli.pipeline; print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_old_workdir_layout_is_refused_in_one_line(tmp_path, capsys, fake_runner):
    """A workdir written before the release/private split: refused with the fix, untouched;
    --force discards it and starts the new layout."""
    wd = tmp_path / "old"
    (wd / "checkpoint").mkdir(parents=True)
    (wd / workdir.MARKER).write_text('{"tool": "wasp-jax", "format": 1}\n')
    (wd / "checkpoint" / "state.json").write_text("{}")
    (wd / "synthetic.jsonl").write_text("")
    (wd / "notes.txt").write_text("mine")
    before = {p: p.read_bytes() for p in wd.rglob("*") if p.is_file()}
    rc, _, err = run_cli(["demo", "--workdir", wd], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert "older wasp-jax layout" in err and "new --workdir" in err and "--force" in err
    assert not fake_runner and {p: p.read_bytes() for p in wd.rglob("*") if p.is_file()} == before
    rc, _, err = run_cli(["demo", "--workdir", wd, "--force"], capsys)
    assert rc == 0, err
    assert sorted(p.name for p in wd.iterdir()) == ["notes.txt", "private", "release"]


def test_a_task_that_check_task_refuses_is_refused_by_run(tmp_path, capsys, fake_runner):
    """The same validation wherever a task is read: run refuses a contrastive instruction
    without {label_word} before any model loads, in one line, writing nothing."""
    spec = json.loads((REPO / "wasp_jax" / "tasks" / "imdb.json").read_text())
    spec["contrastive"]["instruction"] = 'Another review: "'
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(spec))
    wd = tmp_path / "wd"
    rc, _, err = run_cli(["demo", "--workdir", wd, "--set", f"task={path}"], capsys)
    assert rc == 2 and "contrastive.instruction lacks {label_word}" in err, err
    assert err.count("\n") == 1 and not wd.exists() and not fake_runner
    rc, _, err = run_cli(["check-task", path, "--data", tmp_path / "none.jsonl"], capsys)
    assert rc == 2 and "contrastive.instruction lacks {label_word}" in err


def test_a_dead_peer_gives_one_line_and_exit_1_without_a_traceback():
    """In a multi-process job a runtime collective that fails because a peer died (the
    Gloo AllGather error) ends the survivor with one line, exit 1, no traceback."""
    code = (
        "import jax, wasp_jax.cli.pipeline as p\n"
        "with p._job_errors(True):\n"
        "    raise jax.errors.JaxRuntimeError('UNKNOWN: Gloo AllGather failed: Connection "
        "closed by peer [127.0.0.1]:1234\\nmore detail')\n"
    )
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 1, out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert out.stderr.startswith("wasp-jax: error: a collective operation failed because")
    assert "Gloo AllGather failed" in out.stderr and "rerun the same command" in out.stderr


def test_run_reads_a_csv_with_other_column_names(tmp_path, capsys, fake_runner):
    rows = [f'"review number {i} of a film",{i % 2}' for i in range(8)]
    csv = write_lines(tmp_path / "private.csv", ["review,stars", *rows])
    argv = ["run", "--task", "imdb", "--private", csv, "--workdir", tmp_path / "wd"]
    rc, _, err = run_cli(
        argv + ["--text-field", "review", "--label-field", "stars"] + NO_EVAL, capsys
    )
    assert rc == 0, err
    cfg = fake_runner[-1]["cfg"]
    assert (cfg.data.text_field, cfg.data.label_field) == ("review", "stars")
    rc, _, err = run_cli(argv[:-1] + [tmp_path / "wd2"] + NO_EVAL, capsys)
    assert rc == 2 and "line 2: missing field(s)" in err and "--text-field" in err

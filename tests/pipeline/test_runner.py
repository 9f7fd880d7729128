"""End-to-end runner tests with protocol fakes: outputs, resume after a crash at every stage,
no double privacy spending, refusal of a foreign workdir, every method, and a privacy scan of
everything written."""

import json
import logging
import pathlib

import numpy as np
import pytest
from pipeline_fakes import FakeEmbedder, fail_on_call, loaders

import wasp_jax
from tests.private_files import first_private
from wasp_jax import config as C
from wasp_jax.data import bundled_path, read_labeled_jsonl
from wasp_jax.errors import DataWarning
from wasp_jax.models import sharding
from wasp_jax.pipeline.methods import common as rounds
from wasp_jax.pipeline.methods import with_method
from wasp_jax.pipeline.run import inputs as context
from wasp_jax.pipeline.run import runner
from wasp_jax.pipeline.stages import vote
from wasp_jax.privacy.accounting import epsilon_of

pytestmark = pytest.mark.slow  # end-to-end pipeline runs on the tiny models

PRIVATE = bundled_path("imdb", "private.jsonl")


def small_config(**changes):
    base = {
        "data.private_path": first_private(24),
        "generation.plms": ("fake-a", "fake-b"),
        "generation.budget": 36,
        "generation.rounds": 2,
        "generation.batch_size": 8,
        "voting.q": 4,
        "selection.s": 4,
        "generation.num_prompt_variants": 3,
        "runtime.progress": False,
        "privacy.accounting": "rdp",
        # These tests compare resumed and uninterrupted runs byte for byte, which needs the
        # noise of two workdirs to match: seeded noise (NOT DP). Secure mode, where every
        # workdir draws its own secret, is pinned by its properties in test_secure_noise.py.
        "privacy.noise": "seeded",
    }
    base.update(changes)
    return C.replace(C.base_config(), **base)


@pytest.fixture(autouse=True)
def no_report(request, monkeypatch):
    """The report (matplotlib, ~2 s) is built only where a test asks for it."""
    with_report = ("test_report_and_datasheet_written", "test_privacy_scan", "test_prompts_short_")
    if not request.node.name.startswith(with_report):
        monkeypatch.setattr(runner, "_finish", lambda *a: None)


def hooks(on_stage=None):
    g, e = loaders()
    return runner.Hooks(load_generator=g, load_embedder=e, on_stage=on_stage)


def read(workdir, name):
    """A shareable output of the run in `workdir` (in its release/ folder)."""
    return (pathlib.Path(workdir) / "release" / name).read_text()


def outputs(workdir):
    ledger = json.loads(read(workdir, "privacy.json"))
    return read(workdir, "synthetic.jsonl"), ledger


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    wd = tmp_path_factory.mktemp("base")
    events = []
    res = runner.run(small_config(), wd, hooks=hooks(events.append))
    return wd, res, events


def test_report_and_datasheet_written(tmp_path):
    runner.run(small_config(), tmp_path, hooks=hooks())
    release = tmp_path / "release"
    assert (release / "report.md").is_file() and (release / "datasheet.md").is_file()
    assert (release / "plots" / "plm_weights.png").is_file()


def test_outputs(baseline):
    wd, res, events = baseline
    for name in ("synthetic.jsonl", "privacy.json", "metrics.jsonl", "config.json"):
        assert (wd / "release" / name).is_file(), name
    rows = [json.loads(x) for x in read(wd, "synthetic.jsonl").splitlines()]
    assert len(rows) == res.n_synthetic == 36
    assert {r["plm"] for r in rows} == {"fake-a", "fake-b"}
    assert {r["round"] for r in rows} == {0, 1, 2}
    assert all(r["label_name"] == ("negative", "positive")[r["label"]] for r in rows)
    assert len({r["text"] for r in rows}) == len(rows)  # de-duplicated, never padded
    metrics = [json.loads(x) for x in read(wd, "metrics.jsonl").splitlines()]
    assert [m["round"] for m in metrics] == [0, 1, 2]
    assert [m["n_synthetic"] for m in metrics] == [12, 24, 36]
    for m in metrics[1:]:
        assert sum(m["plm_budgets"]) == 12
        assert abs(sum(m["plm_weights"]) - 1) < 1e-9
        assert set(m["noisy_vote_summary"]) == {"nearest", "farthest"}
        assert {"vote", "generate"} <= set(m["stage_seconds"])
    # exact class quotas at round 0: 6 per PLM, 3 per class
    assert metrics[0]["class_counts"] == [6, 6]
    ledger = json.loads(read(wd, "privacy.json"))
    assert ledger["rounds_released"] == 2 and ledger["private_data_used"]
    assert [r["round"] for r in ledger["releases"]] == [1, 2]
    assert ledger["epsilon_spent"] <= 4.0 * (1 + 1e-6)
    assert ledger["sigma"] > 0 and ledger["sensitivity"] > 0
    cfg = C.WaspConfig.from_json(read(wd, "config.json"))
    assert cfg == small_config()
    assert events[0] == "init/0:start" and events[-1] == "r2/close:start"


def test_rerun_is_noop_and_deterministic(baseline, tmp_path):
    wd, _, _ = baseline
    before = outputs(wd)
    res = runner.run(small_config(), wd, hooks=hooks())
    assert res.resumed_stages > 0 and outputs(wd) == before
    res2 = runner.run(small_config(), tmp_path / "again", hooks=hooks())
    assert outputs(tmp_path / "again") == before and res2.resumed_stages == 0


class Crash(Exception):
    pass


def test_resume_after_crash_at_every_stage(baseline, tmp_path):
    """Crashing at the start of stage X leaves the same state as crashing right after the
    stage before X committed, so the ":start" events cover every commit point (a crash after
    the last one is a finished run, see test_rerun_is_noop_and_deterministic)."""
    wd, _, events = baseline
    want = outputs(wd)
    crash_points = [e for e in events if e.endswith(":start")]
    assert len(crash_points) == 11  # 8 stages and 3 round closes
    for i, event in enumerate(crash_points):

        def boom(name, event=event):
            if name == event:
                raise Crash(name)

        crashed = tmp_path / f"crash{i}"
        with pytest.raises(Crash):
            runner.run(small_config(), crashed, hooks=hooks(boom))
        runner.run(small_config(), crashed, hooks=hooks())
        got = outputs(crashed)
        assert got == want, f"resume after a crash at {event} differs"
        assert got[1]["rounds_released"] == 2


def test_crash_after_noise_before_checkpoint(baseline, tmp_path, monkeypatch):
    """A crash after the votes were drawn but before the stage committed reuses the
    persisted release and records it once."""
    wd, _, _ = baseline
    real = rounds.selection.select_good_bad
    flaky = fail_on_call(real, 2, Crash("in round 2 vote"))
    monkeypatch.setattr(rounds.selection, "select_good_bad", flaky)
    with pytest.raises(Crash):
        runner.run(small_config(), tmp_path, hooks=hooks())
    monkeypatch.setattr(rounds.selection, "select_good_bad", real)
    runner.run(small_config(), tmp_path, hooks=hooks())
    assert outputs(tmp_path) == outputs(wd)


def test_foreign_workdir_refused_unless_force(baseline, tmp_path):
    wd = tmp_path / "w"
    runner.run(small_config(), wd, hooks=hooks())
    other = small_config(**{"voting.q": 2})
    with pytest.raises(runner.WorkdirConfigError, match="voting"):
        runner.run(other, wd, hooks=hooks())
    res = runner.run(other, wd, force=True, hooks=hooks())
    assert res.resumed_stages == 0
    assert C.WaspConfig.from_json(read(wd, "config.json")).voting.q == 2
    # runtime settings do not make a workdir foreign
    runner.run(C.replace(other, **{"runtime.progress": True}), wd, hooks=hooks())


def scan_for_private(root: pathlib.Path, extra_text: str, private_texts):
    """Asserts no private text, nor any 30-character window of one, appears anywhere."""
    blobs = [p.read_bytes() for p in root.rglob("*") if p.is_file()]
    blobs.append(extra_text.encode())
    needles = set()
    for t in private_texts:
        b = t.encode()
        step = 15
        needles.update(b[i : i + 30] for i in range(0, max(len(b) - 30, 0) + 1, step))
    for blob in blobs:
        for n in needles:
            assert n not in blob, "private text leaked into an output"
    return len(blobs)


def test_privacy_scan(tmp_path, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    wd = tmp_path / "scan"
    cfg = small_config(**{"embedder.cache_synthetic": True})
    runner.run(cfg, wd, hooks=hooks())
    private = [r["text"] for r in read_labeled_jsonl(PRIVATE)][:24]
    captured = capsys.readouterr()
    logs = "\n".join(r.getMessage() for r in caplog.records)
    n = scan_for_private(wd, captured.out + captured.err + logs, private)
    assert n >= 8
    # no stored array holds a private embedding (the fake embedder is deterministic)
    priv_emb = FakeEmbedder().embed(private)
    arrays = [np.load(p) for p in wd.rglob("*.npy")]
    assert arrays, "expected checkpointed synthetic embeddings and votes"
    for arr in arrays:
        if arr.ndim == 2 and arr.shape[1] == priv_emb.shape[1]:
            dist = np.abs(arr[:, None, :] - priv_emb[None, :, :]).max(axis=-1)
            assert (dist > 1e-6).all(), "a private embedding was written"


@pytest.mark.parametrize(
    "method,changes",
    [
        ("zerogen", {}),
        ("multi_zeroshot", {}),
        ("random_control", {}),
        ("aug_pe", {}),
    ],
)
def test_methods(method, changes, tmp_path):
    cfg = with_method(small_config(), method)
    cfg = C.replace(cfg, **changes) if changes else cfg
    res = runner.run(cfg, tmp_path, hooks=hooks())
    ledger = json.loads(read(tmp_path, "privacy.json"))
    rows = [json.loads(x) for x in read(tmp_path, "synthetic.jsonl").splitlines()]
    assert len(rows) == res.n_synthetic == 36
    if method == "aug_pe":
        assert ledger["private_data_used"] and ledger["rounds_released"] == 2
        assert ledger["num_histograms"] == 1 and {r["plm"] for r in rows} == {"fake-a"}
    else:
        assert not ledger["private_data_used"] and ledger["epsilon_spent"] == 0
        assert ledger["releases"] == [] and "no privacy is spent" in ledger["note"]


def test_replay(tmp_path):
    rng = np.random.default_rng(0)
    pools = []
    for name in ("pool-x", "pool-y"):
        p = tmp_path / f"{name}.jsonl"
        words = ["good", "bad", "film", "plot", "story", "actor", "scene", name]
        p.write_text(
            "".join(
                json.dumps({"text": " ".join(rng.choice(words, 12)) + f" {i}", "label": i % 2})
                + "\n"
                for i in range(60)
            )
        )
        pools.append(str(p))
    cfg = C.replace(small_config(), method="replay", **{"replay.pools": tuple(pools)})
    runner.run(cfg, tmp_path / "wd", hooks=hooks())
    rows = [json.loads(x) for x in read(tmp_path / "wd", "synthetic.jsonl").splitlines()]
    assert len(rows) == 36 and {r["plm"] for r in rows} == {"pool-x", "pool-y"}
    pool_texts = {json.loads(x)["text"] for p in pools for x in open(p)}
    assert {r["text"] for r in rows} <= pool_texts  # no live generation
    metrics = [json.loads(x) for x in read(tmp_path / "wd", "metrics.jsonl").splitlines()]
    assert len(metrics[1]["selected"]["good"]) == 2
    assert json.loads(read(tmp_path / "wd", "privacy.json"))["rounds_released"] == 2


def test_rdp_ledger_and_classic(tmp_path):
    with pytest.raises(C.ConfigError, match="discrete Gaussian"):
        small_config(**{"privacy.accounting": "pld"})
    runner.run(small_config(), tmp_path / "rdp", hooks=hooks())
    ledger = json.loads(read(tmp_path / "rdp", "privacy.json"))
    assert ledger["accounting"] == "rdp" and ledger["rounds_released"] == 2
    assert "discrete Gaussian" in ledger["accountant"] and ledger["noise"] == "seeded"
    assert 3.9 < ledger["epsilon_spent"] <= 4.0 * (1 + 1e-6)  # tight calibration
    cfg = small_config(**{"privacy.accounting": "classic", "voting.q": 8, "generation.budget": 48})
    runner.run(cfg, tmp_path / "classic", hooks=hooks())
    ledger = json.loads(read(tmp_path / "classic", "privacy.json"))
    assert ledger["calibration_sensitivity"] == 4.0  # the original's Delta, Q = 8 contrastive
    assert ledger["sigma"] == pytest.approx(4 * (2 * np.log(1.25e5)) ** 0.5 * 2**0.5 / 4)
    # accounted with the derived sensitivity, never with Delta
    l2 = ledger["l2_sensitivity"]
    assert ledger["sensitivity"] == l2 == pytest.approx(1.632981, abs=1e-6)
    want = epsilon_of([ledger["sigma"] / l2] * 2, 1e-5, accountant="rdp")
    assert ledger["epsilon_spent"] == pytest.approx(want, rel=1e-12) and want < 4.0
    assert "epsilon_spent_l2" not in ledger


def test_parties(tmp_path):
    cfg = small_config(**{"data.num_parties": 3, "data.party_alpha": 1.0})
    runner.run(cfg, tmp_path, hooks=hooks())
    ledger = json.loads(read(tmp_path, "privacy.json"))
    assert ledger["num_parties"] == 3 and "secure aggregation" in ledger["note"]


@pytest.mark.slow
def test_tiny_models_end_to_end(tmp_path):
    """The production loaders with the random tiny models: tiny-llama and tiny-bert.

    Their byte-level output has no spaces, so a user task file (no code) with min_words = 1
    and a one-stage zero-shot prompt lets their samples through.
    """
    spec = json.loads((pathlib.Path(wasp_jax.__file__).parent / "tasks" / "imdb.json").read_text())
    spec.update(name="imdb_tiny", min_words=1)
    spec["zero_shot"] = {"prompt": spec["zero_shot"]["prompt_without_subject"]}
    task = tmp_path / "imdb_tiny.json"
    task.write_text(json.dumps(spec))
    cfg = small_config(
        **{
            "task": str(task),
            "generation.plms": ("tiny-llama",),
            "embedder.name": "tiny-bert",
            "generation.budget": 8,
            "generation.rounds": 1,
            "generation.max_new_tokens": 8,
            "generation.min_new_tokens": 2,
            "generation.max_attempts": 2,
            "voting.q": 2,
            "selection.s": 2,
        }
    )
    res = runner.run(cfg, tmp_path / "wd")
    rows = [json.loads(x) for x in read(tmp_path / "wd", "synthetic.jsonl").splitlines()]
    metrics = [json.loads(x) for x in read(tmp_path / "wd", "metrics.jsonl").splitlines()]
    assert len(rows) == res.n_synthetic > 0
    assert len(rows) + sum(m["shortfall"] for m in metrics) == 8  # shortfalls are recorded
    assert {r["plm"] for r in rows} == {"tiny-llama"}
    ledger = json.loads(read(tmp_path / "wd", "privacy.json"))
    assert ledger["rounds_released"] == 1
    private = [r["text"] for r in read_labeled_jsonl(PRIVATE)][:24]
    scan_for_private(tmp_path / "wd", "", private)


def test_infinite_epsilon_is_written_as_inf(tmp_path, caplog):
    cfg = small_config(**{"privacy.epsilon": float("inf")})
    with caplog.at_level(logging.WARNING):
        runner.run(cfg, tmp_path, hooks=hooks())
    ledger = json.loads(read(tmp_path, "privacy.json"))
    assert ledger["sigma"] == 0.0 and ledger["epsilon"] == "inf"
    assert ledger["epsilon_spent"] == "inf" and ledger["rounds_released"] == 2
    assert "NOT differentially private" in caplog.text
    # Without noise the histograms are the clean votes: none is written anywhere.
    assert not list(tmp_path.rglob("votes_r*"))
    # nor any statistic of them: no vote summary in the metrics, the checkpoint or the report
    metrics = [json.loads(x) for x in read(tmp_path, "metrics.jsonl").splitlines()]
    assert metrics[1:] and all(m["noisy_vote_summary"] is None for m in metrics)
    assert all("no noise" in m["vote_summary_withheld"] for m in metrics[1:])
    state = json.loads(next(tmp_path.rglob("checkpoint/state.json")).read_text())
    assert state["decisions"] and all(d["summary"] is None for d in state["decisions"].values())
    from wasp_jax.outputs import datasheet, report

    text = report.write_report(tmp_path).read_text()
    assert "Noisy votes per class" not in text and "Not shown: privacy.epsilon is inf" in text

    text = datasheet.write_datasheet(tmp_path).read_text()
    assert "NOT differentially private" in text and "(epsilon, delta)-DP" not in text


def test_noisy_votes_are_checkpointed(baseline):
    wd, _, _ = baseline
    assert sorted(p.name for p in wd.rglob("votes_r*")) == ["votes_r1.npy", "votes_r2.npy"]


def test_runtime_mesh_reaches_the_sharded_vote(baseline, tmp_path, monkeypatch):
    """runtime.mesh = "auto" runs the vote's shard_map path; on 8 fake devices the outputs
    equal the single-device run's (the fake models ignore the mesh)."""
    wd, _, _ = baseline
    calls = []
    real = vote._sharded_votes

    def spy(*a, mesh, **k):
        calls.append(mesh.size)
        return real(*a, mesh=mesh, **k)

    monkeypatch.setattr(vote, "_sharded_votes", spy)
    monkeypatch.setattr(context, "make_mesh", lambda: sharding.make_mesh(data=8))
    vote._jitted.cache_clear()
    try:
        runner.run(small_config(**{"runtime.mesh": "auto"}), tmp_path, hooks=hooks())
    finally:
        vote._jitted.cache_clear()
    assert calls and set(calls) == {8}
    assert outputs(tmp_path) == outputs(wd)


def test_locked_workdir_refused_at_once_and_left_untouched(baseline, tmp_path):
    import subprocess
    import sys

    from wasp_jax.pipeline.run.lock import LOCK_FILE, WorkdirLockedError, workdir_lock

    wd = tmp_path / "w"
    runner.run(small_config(), wd, hooks=hooks())

    def files():
        return {
            str(p.relative_to(wd)): p.read_bytes()
            for p in wd.rglob("*")
            if p.is_file() and p.name != LOCK_FILE
        }

    before = files()
    assert "private/noise_secret" in before and "release/synthetic.jsonl" in before
    # Another process holds the lock (as a running run would), and a forced run with another
    # config starts: it must not clear or write anything.
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT);"
         "fcntl.flock(fd, fcntl.LOCK_EX); os.pwrite(fd, b'pid %d' % os.getpid(), 0);"
         "print('held', flush=True); time.sleep(60)", str(wd / LOCK_FILE)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(WorkdirLockedError, match=f"pid {holder.pid}"):
            runner.run(small_config(**{"voting.q": 2}), wd, force=True, hooks=hooks())
    finally:
        holder.kill()
        holder.wait()
    assert files() == before
    # The OS released the killed holder's lock: the workdir is usable again, and within one
    # process the lock is exclusive too.
    with workdir_lock(wd):
        with pytest.raises(WorkdirLockedError, match="in use by another wasp-jax run"):
            runner.run(small_config(), wd, hooks=hooks())
    res = runner.run(small_config(), wd, hooks=hooks())
    assert res.resumed_stages > 0


@pytest.mark.parametrize("force", [False, True])
def test_folder_that_never_held_a_run_is_not_cleared_or_overwritten(tmp_path, force):
    wd = tmp_path / "mine"
    (wd / "checkpoint").mkdir(parents=True)
    (wd / "checkpoint" / "model_weights.bin").write_bytes(b"precious")
    (wd / "metrics.jsonl").write_text("my own metrics\n")
    with pytest.raises(runner.WorkdirConfigError, match="no wasp-jax run"):
        runner.run(small_config(), wd, force=force, hooks=hooks())
    assert (wd / "checkpoint" / "model_weights.bin").read_bytes() == b"precious"
    assert (wd / "metrics.jsonl").read_text() == "my own metrics\n"
    assert not (wd / "config.json").exists()
    assert not (wd / "release").exists() and not (wd / "private").exists()


def test_prompts_short_of_s_examples_are_warned_recorded_and_reported(tmp_path):
    """With 6 candidates per class at the first vote, S = 4 good and 4 bad cannot all be
    filled: one warning line per round names the classes and the fix, metrics.jsonl records
    it, and the report has a Shortfalls section."""
    cfg = small_config(**{"generation.budget": 24, "voting.q": 2})
    with pytest.warns(DataWarning, match=r"round 1: fewer than S=4 examples in some prompts"):
        runner.run(cfg, tmp_path, hooks=hooks())
    metrics = [json.loads(x) for x in read(tmp_path, "metrics.jsonl").splitlines()]
    short = metrics[1]["short_examples"]
    assert short and all(n < 4 for v in short.values() for n in v.values())
    assert set().union(*[set(v) for v in short.values()]) <= {"negative", "positive"}
    from wasp_jax.outputs import report

    text = report.write_report(tmp_path).read_text()
    assert "## Shortfalls" in text and "raise generation.budget" in text

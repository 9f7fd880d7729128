"""Failure handling of a run: foreign and changed inputs refused, --force confined to a run's
own files, one-line errors with exit code 2 for every failure a user can cause, tidy
atomic writes, a ledger never behind its checkpoint, and stable bytes across a resume."""

import errno
import json
import os
import pathlib
import subprocess
import sys

import chex
import numpy as np
import pytest
from pipeline_fakes import FakeGenerator, loaders
from test_runner import Crash, hooks, read, small_config

from tests.private_files import first_private
from wasp_jax import class_checks, cli
from wasp_jax import config as C
from wasp_jax import data as data_io
from wasp_jax.errors import DataError, DataWarning
from wasp_jax.models import cache as cache_lib
from wasp_jax.pipeline.run import fingerprint, runner, workdir
from wasp_jax.pipeline.run import inputs as context

pytestmark = pytest.mark.slow  # pipeline runs interrupted, resumed and broken on purpose

PRIVATE = pathlib.Path(first_private(24))  # the private file of every run here


@pytest.fixture(autouse=True)
def no_report(request, monkeypatch):
    if "report" not in request.node.name:
        monkeypatch.setattr(runner, "_finish", lambda *a: None)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """An uninterrupted run's file bytes (the reference for every resume here)."""
    wd = tmp_path_factory.mktemp("finished")
    mp = pytest.MonkeyPatch()
    mp.setattr(runner, "_finish", lambda *a: None)
    runner.run(small_config(), wd, hooks=hooks())
    mp.undo()
    return wd, released_bytes(wd)


def released_bytes(wd: pathlib.Path) -> dict[str, bytes]:
    """synthetic.jsonl and privacy.json as bytes; metrics.jsonl without its wall times."""
    names = ("synthetic.jsonl", "privacy.json", "config.json")
    out = {n: (wd / "release" / n).read_bytes() for n in names}
    rows = [json.loads(line) for line in read(wd, "metrics.jsonl").splitlines()]
    out["metrics keys"] = json.dumps([list(r) for r in rows]).encode()
    out["metrics"] = json.dumps([{**r, "stage_seconds": None} for r in rows]).encode()
    return out


# ------------------------------------------------------------------------- CLI with fakes


@pytest.fixture
def cli_fakes(monkeypatch):
    """The real runner behind the command line, with the protocol fakes as its models."""
    g, e = loaders()
    monkeypatch.setattr(context, "load_generator", g)
    monkeypatch.setattr(context, "load_embedder", e)


SMALL = {
    "data.private_path": str(PRIVATE),
    "generation.plms": "tiny-llama,tiny-gemma3",
    "embedder.name": "tiny-bert",
    "generation.budget": 36,
    "generation.rounds": 2,
    "generation.batch_size": 8,
    "generation.num_prompt_variants": 3,
    "voting.q": 4,
    "selection.s": 4,
    "privacy.accounting": "rdp",
    "privacy.noise": "seeded",  # byte-for-byte comparisons across workdirs (NOT DP)
    "runtime.progress": "false",
}


def demo(wd, capsys, *extra, **changes):
    sets = {**SMALL, **changes}
    argv = ["demo", "--workdir", str(wd), *extra]
    for k, v in sets.items():
        argv += ["--set", f"{k}={v}"]
    rc = cli.main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def one_line_error(rc, err, *needles):
    lines = [line for line in err.splitlines() if "error:" in line]
    assert rc == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], (n, lines[0])


# ------------------------------------------------------------- 1. lock and config fingerprint


def test_checkpoint_of_another_config_is_refused(finished, tmp_path):
    """A checkpoint whose config differs from config.json (two runs interleaved in one
    workdir) is refused by its fingerprint, not resumed."""
    wd = tmp_path / "w"
    runner.run(small_config(), wd, hooks=hooks())
    other = small_config(**{"privacy.epsilon": 1.0})
    (wd / "release" / "config.json").write_text(other.to_json() + "\n")
    with pytest.raises(fingerprint.InputsChangedError, match="config changed"):
        runner.run(other, wd, hooks=hooks())
    state = json.loads((wd / "private" / "checkpoint" / "state.json").read_text())
    assert state["fingerprints"]["config"] == fingerprint.config_fingerprint(small_config())


# ------------------------------------------------------------ 2. --force removes its own only


def test_force_unlinks_symlinks_and_keeps_their_targets(tmp_path):
    wd, outside = tmp_path / "w", tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    runner.run(small_config(), wd, hooks=hooks())
    release = wd / "release"
    (release / "report.md").unlink(missing_ok=True)
    os.symlink(outside / "keep.txt", release / "report.md")
    os.symlink(outside, release / "plots")
    os.symlink(outside, wd / "private" / "embed_cache")
    (wd / "notes.txt").write_text("user file")  # not a name a run writes: left alone
    runner.run(small_config(**{"voting.q": 2}), wd, force=True, hooks=hooks())
    assert (outside / "keep.txt").read_text() == "mine"
    assert not (release / "plots").is_symlink() and not (release / "report.md").is_symlink()
    assert not (wd / "private" / "embed_cache").exists()
    assert (wd / "notes.txt").read_text() == "user file"


@pytest.mark.parametrize("force", [False, True])
def test_foreign_config_json_is_not_overwritten(tmp_path, force):
    wd = tmp_path / "mine"
    wd.mkdir()
    (wd / "config.json").write_text('{"my": "settings"}\n')
    with pytest.raises(runner.WorkdirConfigError, match="no wasp-jax run"):
        runner.run(small_config(), wd, force=force, hooks=hooks())
    assert (wd / "config.json").read_text() == '{"my": "settings"}\n'


def test_marker_is_written_first_and_recognised(tmp_path):
    wd = tmp_path / "w"

    def crash(event):
        raise Crash(event)

    with pytest.raises(Crash):
        runner.run(small_config(), wd, hooks=hooks(crash))  # before the first stage
    assert (wd / "private" / workdir.MARKER).is_file()
    assert (wd / "release" / "config.json").is_file()
    res = runner.run(small_config(), wd, hooks=hooks())
    assert res.resumed_stages == 0


# ---------------------------------------------------------------------- 3. infinite epsilon


def test_infinite_epsilon_ledger_report_and_resume(tmp_path, monkeypatch):
    cfg = small_config(**{"privacy.epsilon": float("inf")})
    ref = tmp_path / "ref"
    runner.run(cfg, ref, hooks=hooks())
    ledger = json.loads(read(ref, "privacy.json"))
    assert ledger["private"] is False and "NOT differentially private" in ledger["note"]
    from wasp_jax.outputs import report

    monkeypatch.undo()  # the report itself is wanted here
    text = report.write_report(ref).read_text()
    assert "NOT differentially private" in text
    # Crashed after round 1's vote committed: the resume recomputes the later vote from
    # memory (nothing is read back: no vote file exists) and matches the uninterrupted run.
    wd = tmp_path / "crashed"

    def boom(event):
        if event == "r2/vote:start":
            raise Crash(event)

    monkeypatch.setattr(runner, "_finish", lambda *a: None)
    with pytest.raises(Crash):
        runner.run(cfg, wd, hooks=hooks(boom))
    assert not list(wd.rglob("votes_r*"))
    runner.run(cfg, wd, hooks=hooks())
    assert released_bytes(wd)["synthetic.jsonl"] == released_bytes(ref)["synthetic.jsonl"]
    assert not list(wd.rglob("votes_r*"))


def test_seeded_ledger_is_marked_not_private(finished):
    """These runs use seeded noise (to compare bytes across workdirs): sigma > 0, but the
    ledger must not call them private (tests/pipeline/test_secure_noise.py pins secure runs)."""
    wd, _ = finished
    ledger = json.loads(read(wd, "privacy.json"))
    assert ledger["noise"] == "seeded" and ledger["private"] is False
    assert "NOT DP: noise reproducible from the seed" in ledger["note"]


# -------------------------------------------------------------------- 4. resources and disk


def test_too_little_disk_is_refused_before_any_work(tmp_path, monkeypatch):
    real = workdir.shutil.disk_usage
    monkeypatch.setattr(workdir.shutil, "disk_usage", lambda p: real(p)._replace(free=5 * 2**20))
    wd = tmp_path / "w"
    with pytest.raises(workdir.WorkdirConfigError, match=r"5 MiB free .* needs about \d+ MiB"):
        runner.run(small_config(), wd, hooks=hooks())
    assert not (wd / "release").exists() and not (wd / "private").exists()
    assert workdir.disk_estimate(small_config(**{"generation.budget": 10**6})) > 2**30


# ------------------------------------------------------------------- 5. one error path (CLI)


@pytest.mark.parametrize("kind", ["etc_file", "empty_dir", "fake_gguf", "no_weights"])
def test_model_path_that_is_not_a_model(kind, tmp_path, capsys, cli_fakes):
    bad = {
        "etc_file": pathlib.Path("/etc/passwd"),
        "empty_dir": tmp_path / "empty",
        "fake_gguf": tmp_path / "m.gguf",
        "no_weights": tmp_path / "cfg_only",
    }[kind]
    if kind == "empty_dir":
        bad.mkdir()
    elif kind == "fake_gguf":
        bad.write_bytes(b"not a gguf file")
    elif kind == "no_weights":
        bad.mkdir()
        (bad / "config.json").write_text('{"model_type": "llama"}')
    wd = tmp_path / "wd"
    rc, _, err = demo(wd, capsys, **{"generation.plms": f"tiny-llama,{bad}"})
    one_line_error(rc, err, "generation.plms", str(bad))
    rc, _, err = demo(wd, capsys, **{"embedder.name": str(bad)})
    one_line_error(rc, err, "embedder.name", "Hugging Face BERT folder")
    assert not wd.exists()


def test_embedder_that_fails_to_load_stops_the_run_before_generation(tmp_path):
    g, _ = loaders()
    made = []

    def gen(spec, **kw):
        made.append(spec)
        return g(spec, **kw)

    def broken(spec, **kw):
        raise ValueError("checkpoint lacks tensor 'embeddings.word_embeddings.weight'")

    h = runner.Hooks(load_generator=gen, load_embedder=broken)
    with pytest.raises(context.ModelLoadError, match="embedder.name: cannot load"):
        runner.run(small_config(), tmp_path, hooks=h)
    state = tmp_path / "private" / "checkpoint" / "state.json"
    assert not state.exists() and not (tmp_path / "release" / "synthetic.jsonl").exists()


@pytest.mark.parametrize("where", ["under_a_file", "proc"])
def test_unwritable_workdir(where, tmp_path, capsys, cli_fakes):
    if where == "under_a_file":
        (tmp_path / "f").write_text("x")
        wd, needle = tmp_path / "f" / "run", "which is a file"
    else:
        wd, needle = pathlib.Path("/proc/wasp-jax-run"), "cannot be written"
    rc, _, err = demo(wd, capsys)
    one_line_error(rc, err, needle)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_workdir(tmp_path, capsys, cli_fakes):
    wd = tmp_path / "ro"
    wd.mkdir()
    wd.chmod(0o555)
    rc, _, err = demo(wd, capsys)
    one_line_error(rc, err, "cannot be written")


def test_finished_run_does_not_rewrite_config(finished, tmp_path):
    wd = tmp_path / "w"
    runner.run(small_config(), wd, hooks=hooks())
    before = (wd / "release" / "config.json").stat().st_mtime_ns
    runner.run(small_config(**{"runtime.progress": False}), wd, hooks=hooks())
    assert (wd / "release" / "config.json").stat().st_mtime_ns == before


def test_full_disk_is_one_line_and_resume_is_exact(finished, tmp_path, capsys, cli_fakes,
                                                   monkeypatch):  # fmt: skip
    wd = tmp_path / "w"
    real = data_io.atomic_write_text
    calls = {"n": 0}

    def full(path, text):
        calls["n"] += 1
        if calls["n"] == 12:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, text)

    monkeypatch.setattr(data_io, "atomic_write_text", full)
    rc, _, err = demo(wd, capsys, **{"data.private_path": str(PRIVATE)})
    one_line_error(rc, err, "disk is full", "rerun the same command")
    monkeypatch.setattr(data_io, "atomic_write_text", real)
    rc, _, err = demo(wd, capsys, **{"data.private_path": str(PRIVATE)})
    assert rc == 0, err
    ref = tmp_path / "ref"
    rc, _, err = demo(ref, capsys, **{"data.private_path": str(PRIVATE)})
    assert rc == 0 and released_bytes(wd) == released_bytes(ref)


@pytest.mark.parametrize("damage", ["truncated_state", "object_array", "state_not_object"])
def test_damaged_checkpoint_is_one_line_and_force_recovers(damage, tmp_path, capsys, cli_fakes):
    wd = tmp_path / "w"
    assert demo(wd, capsys)[0] == 0
    ckpt = wd / "private" / "checkpoint"
    if damage == "truncated_state":
        text = (ckpt / "state.json").read_text()
        (ckpt / "state.json").write_text(text[: len(text) // 2])
    elif damage == "object_array":
        np.save(ckpt / "syn_emb.npy", np.array([{"a": 1}, None], dtype=object))
    else:
        (ckpt / "state.json").write_text("[1, 2]")
    rc, _, err = demo(wd, capsys)
    one_line_error(rc, err, "is damaged", "--force")
    assert demo(wd, capsys, "--force")[0] == 0


# ---------------------------------------------------------------------------- 6. dead ends


class Silent(FakeGenerator):
    """Every text it writes is dropped by the task's filters."""

    def generate(self, prompts, *, num_samples=1, **kw):
        return [["short"] * num_samples for _ in prompts]


def test_everything_filtered_out_is_a_clear_error(tmp_path):
    _, e = loaders()
    h = runner.Hooks(load_generator=lambda spec, **kw: Silent(spec), load_embedder=e)
    with pytest.raises(DataError) as info:
        runner.run(small_config(), tmp_path, hooks=h)
    msg = str(info.value)
    assert "no candidates" in msg and "filtered out" in msg and "--force" in msg
    assert "too short" in msg  # the filter that removed them is named
    assert "at most 0" not in msg


def test_empty_class_is_named_before_short_ones():
    with pytest.raises(DataError) as info:
        class_checks.check_candidate_counts([3, 0], 5, label_names=("neg", "pos"))
    assert "class 1 ('pos') has no candidates" in str(info.value)
    assert "at most 0" not in str(info.value)


# ------------------------------------------------------------------------- 7. tidy writes


def test_orphaned_temp_files_are_swept_on_the_next_start(finished, tmp_path):
    wd = tmp_path / "w"
    runner.run(small_config(), wd, hooks=hooks())
    planted = [
        wd / "release" / ".synthetic.jsonl.a1b2c3.tmp",
        wd / "release" / ".privacy.json.x9y8z7.tmp",
        wd / "private" / ".noise_secret.k4l5m6.tmp",
        wd / "private" / "checkpoint" / ".state.json.q1w2e3.tmp",
    ]
    for p in planted:
        p.write_text("half")
    (wd / ".hidden.tmp").write_text("not ours")  # not the atomic writer's pattern
    runner.run(small_config(), wd, hooks=hooks())
    assert not any(p.exists() for p in planted)
    assert (wd / ".hidden.tmp").exists()


def test_model_cache_leftovers_of_dead_writers_are_swept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"params.tmp{dead.pid}"
    (stale / "state").mkdir(parents=True)
    (stale / "state" / "blob").write_bytes(b"x" * 1000)
    live = tmp_path / f"params.tmp{os.getpid()}"
    live.mkdir()
    stale_file = tmp_path / f".part-abc.tmp{dead.pid}.npz"
    stale_file.write_bytes(b"x")
    cache_lib.save_state(tmp_path / "params", {"w": np.ones(3, np.float32)})
    assert not stale.exists() and not stale_file.exists()
    assert cache_lib.is_cached(tmp_path / "params")
    got = cache_lib.restore_state(tmp_path / "params", {"w": np.zeros(3, np.float32)})
    chex.assert_trees_all_close(got, {"w": np.ones(3, np.float32)})
    assert not list(tmp_path.glob("*.tmp*"))  # the live writer's own folder was its own tmp


def test_ledger_is_never_behind_the_checkpoint(finished, tmp_path, monkeypatch):
    """Killed between the two writes of round 2's vote: the ledger already shows the
    release, the checkpoint does not; the resume records it once and matches."""
    wd = tmp_path / "w"
    real_save = context.Checkpoint.save

    def save(self, state, arrays=None):
        if "r2/vote" in state.done:
            raise Crash("between privacy.json and state.json")
        return real_save(self, state, arrays)

    monkeypatch.setattr(context.Checkpoint, "save", save)
    with pytest.raises(Crash):
        runner.run(small_config(), wd, hooks=hooks())
    on_disk = json.loads(read(wd, "privacy.json"))["rounds_released"]
    state = (wd / "private" / "checkpoint" / "state.json").read_text()
    in_ckpt = len(json.loads(state)["ledger"]["releases"])
    assert on_disk == 2 and in_ckpt == 1
    monkeypatch.setattr(context.Checkpoint, "save", real_save)
    runner.run(small_config(), wd, hooks=hooks())
    assert released_bytes(wd) == finished[1]


@pytest.mark.parametrize("mask,mode", [(0o077, 0o600), (0o022, 0o644)])
def test_outputs_honour_the_umask(mask, mode, tmp_path):
    old = os.umask(mask)
    try:
        runner.run(small_config(), tmp_path, hooks=hooks())
    finally:
        os.umask(old)
    for name in ("synthetic.jsonl", "privacy.json", "config.json"):
        assert (tmp_path / "release" / name).stat().st_mode & 0o777 == mode, name
    state = tmp_path / "private" / "checkpoint" / "state.json"
    assert state.stat().st_mode & 0o777 == mode
    # the private part and the secret are closed whatever the umask
    assert (tmp_path / "private").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "private" / "noise_secret").stat().st_mode & 0o777 == 0o600


def test_bytes_are_stable_across_a_resume(finished, tmp_path):
    for event in ("r1/vote:start", "r2/gen/1:start", "r2/close:start"):

        def boom(name, event=event):
            if name == event:
                raise Crash(name)

        wd = tmp_path / event.replace("/", "_").replace(":", "_")
        with pytest.raises(Crash):
            runner.run(small_config(), wd, hooks=hooks(boom))
        runner.run(small_config(), wd, hooks=hooks())
        assert released_bytes(wd) == finished[1], event


# --------------------------------------------------------------- 8. inputs fingerprinted


def test_changed_private_file_is_refused_on_resume(tmp_path):
    private = tmp_path / "private.jsonl"
    private.write_bytes(PRIVATE.read_bytes())
    cfg = small_config(**{"data.private_path": str(private)})
    wd = tmp_path / "w"

    def boom(event):
        if event == "r2/vote:start":
            raise Crash(event)

    with pytest.raises(Crash):
        runner.run(cfg, wd, hooks=hooks(boom))
    lines = private.read_text().splitlines()
    private.write_text("\n".join(lines[1:] + lines[:1]) + "\n")  # same path, other bytes
    with pytest.raises(fingerprint.InputsChangedError, match="private data .* changed"):
        runner.run(cfg, wd, hooks=hooks())
    private.write_bytes(PRIVATE.read_bytes())
    runner.run(cfg, wd, hooks=hooks())  # restored: resumes


def test_private_fingerprint_lives_only_in_the_checkpoint(finished):
    wd, _ = finished
    secret = (wd / "private" / "noise_secret").read_bytes()
    keyed = fingerprint.keyed_file_digest(PRIVATE, secret)
    plain = fingerprint.file_digest(PRIVATE)
    assert keyed != plain
    files = [p for p in wd.rglob("*") if p.is_file()]
    assert [p for p in files if keyed.encode() in p.read_bytes()] == [
        wd / "private" / "checkpoint" / "state.json"
    ]
    assert not [p for p in files if plain.encode() in p.read_bytes()]


def test_model_fingerprint_follows_the_files(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama"}')
    (folder / "model.safetensors").write_bytes(b"\0" * (fingerprint.SMALL_FILE + 10))
    a = fingerprint.model_fingerprint(str(folder))
    assert fingerprint.model_fingerprint(str(folder)) == a
    (folder / "config.json").write_text('{"model_type": "llama", "x": 1}')
    b = fingerprint.model_fingerprint(str(folder))
    with open(folder / "model.safetensors", "r+b") as fh:  # the large file's last bytes
        fh.seek(-1, 2)
        fh.write(b"\1")
    c = fingerprint.model_fingerprint(str(folder))
    assert len({a, b, c}) == 3
    assert fingerprint.model_fingerprint("tiny-bert") != fingerprint.model_fingerprint("x")


def test_changed_task_or_plm_source_is_named(tmp_path):
    saved = {"config": "1", "PLM 'a'": "2", "task 'imdb'": "3"}
    now = {"config": "1", "PLM 'a'": "9", "task 'imdb'": "8"}
    with pytest.raises(fingerprint.InputsChangedError, match="PLM 'a', task 'imdb' changed"):
        fingerprint.check_unchanged(saved, now, "the run")
    fingerprint.check_unchanged({}, now, "the run")  # a state from before fingerprints


# --------------------------------------------------------------------------- 10. cosmetics


def test_class_warning_is_said_once(tmp_path, capsys):
    import warnings

    import wasp_jax.cli.pipeline as pipeline_cli

    only_neg = tmp_path / "p.jsonl"
    only_neg.write_text('{"text": "fine film", "label": 0}\n' * 3)
    cfg = C.replace(C.demo_config(), **{"data.private_path": str(only_neg)})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipeline_cli.check_run_inputs(cfg)
        class_checks.warn_missing_classes([{"label": 0}], ("negative", "positive"))
    err = capsys.readouterr().err
    assert err.count("no samples of class 1") == 1
    assert not [w for w in caught if issubclass(w.category, DataWarning)]

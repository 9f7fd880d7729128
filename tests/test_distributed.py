"""Joining a job, the host-level collectives and `wasp-jax launch`.

The pure parts (job description, shares, the launcher's environment and exit status) run in
this process; the collectives and the vote on a global mesh run in 2 local processes x 2 CPU
devices started by `wasp-jax launch`, each checking its results against a one-process
reference computed in the same process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from wasp_jax import distributed as dist
from wasp_jax.cli import launch
from wasp_jax.cli import main as cli_main
from wasp_jax.errors import UsageError

ENV = dist.runtime


# ------------------------------------------------------------------------------ job spec


def test_no_job_without_flags_or_environment():
    assert dist.job_spec(env={}) is None


def test_flags_win_over_the_environment():
    env = {ENV.ENV_COORDINATOR: "h:1", ENV.ENV_NUM_PROCESSES: "4", ENV.ENV_PROCESS_ID: "3"}
    spec = dist.job_spec("10.0.0.1:1234", "2", "1", env=env)
    assert (spec.coordinator, spec.num_processes, spec.process_id) == ("10.0.0.1:1234", 2, 1)
    spec = dist.job_spec(env=env)
    assert (spec.coordinator, spec.num_processes, spec.process_id) == ("h:1", 4, 3)
    assert not spec.auto


def test_heartbeat_from_the_environment():
    env = {ENV.ENV_COORDINATOR: "h:1", ENV.ENV_NUM_PROCESSES: "2", ENV.ENV_PROCESS_ID: "0"}
    assert dist.job_spec(env=env).heartbeat_s == ENV.DEFAULT_HEARTBEAT_S
    assert dist.job_spec(env={**env, ENV.ENV_HEARTBEAT: "7"}).heartbeat_s == 7


@pytest.mark.parametrize(
    "args, match",
    [
        (("h:1", None, None), "missing --num-processes N .* --process-id I"),
        ((None, 2, 0), "missing --coordinator HOST:PORT"),
        (("h:1", 2, 2), r"--process-id must be in 0 \.\. 1 for 2 processes, got 2"),
        (("h:1", 0, 0), "--num-processes must be >= 1"),
        (("h:1", "two", 0), "--num-processes must be an integer, got 'two'"),
        (("nohost", 2, 0), "--coordinator must be HOST:PORT"),
        ((":12", 2, 0), "--coordinator must be HOST:PORT"),
    ],
)
def test_a_bad_job_description_names_the_fix(args, match):
    with pytest.raises(UsageError, match=match):
        dist.job_spec(*args, env={})


def test_auto_leaves_the_job_to_cluster_detection():
    spec = dist.job_spec(auto=True, env={})
    assert spec.auto and spec.coordinator is None and spec.num_processes is None


def test_a_bad_job_flag_is_exit_code_2(tmp_path, capsys):
    code = cli_main(
        ["demo", "--workdir", str(tmp_path / "w"), "--coordinator", "h:1", "--process-id", "0"]
    )
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing --num-processes N" in err[0], err
    assert not (tmp_path / "w").exists()


# ------------------------------------------------------------------- shares, identities


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7])
def test_shares_cover_the_range_once_and_evenly(count):
    for n in range(0, 23):
        parts = [dist.share(n, index=i, count=count) for i in range(count)]
        assert [x for s in parts for x in range(n)[s]] == list(range(n))
        sizes = [len(range(n)[s]) for s in parts]
        assert max(sizes) - min(sizes) <= 1


def test_one_process_collectives_are_identities():
    assert dist.process_count() == 1 and dist.is_writer() and not dist.is_multi()
    assert dist.allgather_bytes(b"abc") == [b"abc"]
    assert dist.broadcast_bytes(b"xy") == b"xy" and dist.broadcast_bytes(None) is None
    assert dist.check_same("x", b"1") == dist.collect.digest(b"1").hex()
    dist.barrier("nothing to wait for")


def test_digest_tells_arrays_apart_by_dtype_and_shape():
    import numpy as np

    a = np.zeros(4, np.float32)
    assert dist.collect.digest(a) != dist.collect.digest(a.view(np.int32))
    assert dist.collect.digest(a) != dist.collect.digest(a.reshape(2, 2))
    assert dist.collect.digest(b"ab", b"c") != dist.collect.digest(b"a", b"bc")


# ------------------------------------------------------------------------------ launcher


def test_launcher_sets_each_process_its_place_and_devices(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_foo=1 --xla_force_host_platform_device_count=8")
    env = launch._env(1, 3, 4567, 2)
    assert env[ENV.ENV_COORDINATOR] == "127.0.0.1:4567"
    assert (env[ENV.ENV_NUM_PROCESSES], env[ENV.ENV_PROCESS_ID]) == ("3", "1")
    assert env["XLA_FLAGS"].split() == ["--xla_foo=1", "--xla_force_host_platform_device_count=2"]
    assert launch._env(0, 1, 1, None)["XLA_FLAGS"] == os.environ["XLA_FLAGS"]


@pytest.mark.parametrize(
    "argv, match",
    [
        (["launch", "--processes", "2"], "give the command to launch after --"),
        (["launch", "--processes", "2", "--", "launch"], "cannot launch itself"),
        (["launch", "--processes", "0", "--", "run"], "--processes must be >= 1"),
    ],
)
def test_launcher_refuses_bad_input(argv, match, capsys):
    assert cli_main(argv) == 2
    assert match in capsys.readouterr().err


def test_launcher_stops_the_others_when_one_fails(monkeypatch, capfd):
    # process 0 prints and fails at once; process 1 would sleep for a minute
    monkeypatch.setattr(
        launch,
        "ENTRY",
        "import os, sys, time; i = int(os.environ['WASP_JAX_PROCESS_ID']); "
        "print('hello from', i, sys.argv[1:], flush=True); time.sleep(60 * i); sys.exit(3)",
    )
    t0 = time.monotonic()
    assert cli_main(["launch", "--processes", "2", "--", "run", "x"]) == 3
    assert time.monotonic() - t0 < 30
    out, err = capfd.readouterr()
    assert "[p0] hello from 0 ['run', 'x']" in out and "[p1] hello from 1" in out
    assert "process 0 exited with status 3; the others were stopped" in err


def test_launcher_timeout_stops_everyone(monkeypatch, capfd):
    monkeypatch.setattr(launch, "ENTRY", "import time; time.sleep(60)")
    t0 = time.monotonic()
    assert cli_main(["launch", "--processes", "2", "--timeout", "1", "--", "x"]) == 124
    assert time.monotonic() - t0 < 30
    assert "timed out after 1 s" in capfd.readouterr().err


def test_stop_all_kills_what_ignores_sigterm():
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    p = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        time.sleep(0.5)
        t0 = time.monotonic()
        launch.stop_all([p], grace_s=1.0)
        assert p.poll() == -signal.SIGKILL and time.monotonic() - t0 < 10
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)


# ------------------------------------------------------------------------------ two processes

WORKER = r"""
import os, sys
import numpy as np
from wasp_jax import distributed as dist
assert dist.initialize(dist.job_spec())
import jax
from wasp_jax.pipeline.stages.vote import vote_and_noise
from wasp_jax.privacy.noise_source import NoiseSource
from wasp_jax.pipeline.run.spread import vote_mesh

i, n = dist.process_index(), dist.process_count()
assert (n, jax.local_device_count(), jax.device_count()) == (2, 2, 4)
got = dist.allgather_bytes(b"x" * (3 + 5 * i))
assert got == [b"xxx", b"x" * 8], got
assert dist.broadcast_bytes(b"from %d" % i) == b"from 0"
assert dist.broadcast_bytes(None if i == 0 else b"other") is None
# every cell filled by its owner, then every process holds all of them
tokens = [[None] * 2 for _ in range(3)]
logprobs = [[None] * 2 for _ in range(3)]
cells = [(a, b) for a in range(3) for b in range(2)]
mine = cells[dist.share(len(cells))]
for a, b in mine:
    tokens[a][b] = np.arange(a + b, dtype=np.int32)
    logprobs[a][b] = np.full(a + b, -0.5 * a, np.float32)
dist.allgather_cells(mine, tokens, logprobs)
for a, b in cells:
    assert tokens[a][b].tolist() == list(range(a + b)) and logprobs[a][b].dtype == np.float32
dist.check_same("a shared value", b"same")
try:
    dist.check_same("this process's id", str(i))
    raise SystemExit("divergence not caught")
except dist.DivergenceError as err:
    assert "processes [1] disagree with process 0" in str(err), err
# the vote on the global mesh equals the one-device vote of the same inputs, in each process
rng = np.random.default_rng(0)
e_priv = rng.normal(size=(9, 16)).astype(np.float32)
e_syn = rng.normal(size=(37, 16)).astype(np.float32)
e_priv /= np.linalg.norm(e_priv, axis=1, keepdims=True)
e_syn /= np.linalg.norm(e_syn, axis=1, keepdims=True)
y_priv, y_syn = np.arange(9) % 2, np.arange(37) % 2
key = NoiseSource.seeded(3)
kw = dict(q=3, sigma=1.5)
mesh = vote_mesh(None)
assert mesh.is_multi_process and mesh.size == 4
spread = vote_and_noise(key, e_priv, y_priv, e_syn, y_syn, mesh=mesh, **kw)
local = vote_and_noise(key, e_priv, y_priv, e_syn, y_syn, **kw)
for name in ("nearest", "farthest"):
    a, b = np.asarray(getattr(spread, name)), np.asarray(getattr(local, name))
    assert a.shape == (37,) and np.array_equal(a, b), (name, a, b)
dist.check_same("the noisy votes", np.asarray(spread.nearest), np.asarray(spread.farthest))
# the run's noise secret: process 0 draws it into the private folder and broadcasts it
import pathlib
from wasp_jax.pipeline.run.secret import SECRET_FILE, shared_secret
private = pathlib.Path(os.environ["WASP_TEST_PRIVATE"])
secret = shared_secret(private)
assert len(secret) == 32
dist.check_same("the run's noise secret", secret)
dist.barrier("secret written")
assert sorted(os.listdir(private)) == [SECRET_FILE]
assert (private / SECRET_FILE).read_bytes() == secret
assert shared_secret(private, must_exist=True) == secret  # a resume: read back, not redrawn
dist.barrier("end")
print("worker", i, "ok", flush=True)
"""


@pytest.mark.slow
def test_collectives_and_the_global_vote_in_two_processes(monkeypatch, capfd, tmp_path):
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("WASP_TEST_PRIVATE", str(tmp_path))
    monkeypatch.setenv(ENV.ENV_HEARTBEAT, "5")
    monkeypatch.setattr(launch, "ENTRY", WORKER)
    argv = ["launch", "--processes", "2", "--devices-per-process", "2", "--timeout", "300"]
    code = cli_main([*argv, "--", "x"])
    out, err = capfd.readouterr()
    assert code == 0, out[-3000:] + err[-1000:]
    assert "[p0] worker 0 ok" in out and "[p1] worker 1 ok" in out


STM_WORKER = r"""
import warnings
import numpy as np
from wasp_jax import distributed as dist
assert dist.initialize(dist.job_spec())
import jax
from wasp_jax.pipeline.run.spread import stm_mesh
from wasp_jax.stm.classifier import STMConfig
from wasp_jax.stm.finetune import train_classifier

warnings.simplefilter("ignore")
texts = [f"text number {i} {'good' if i % 2 else 'bad'}" for i in range(24)]
labels = [i % 2 for i in range(24)]
cfg = STMConfig(encoder="tiny-bert", epochs=1, batch_size=8, max_length=16, val_fraction=0.25)
mesh = stm_mesh("finetune")
assert mesh.is_multi_process and mesh.size == 4 and stm_mesh("probe") is None
runs = {}
for name, m in (("global", mesh), ("local", None)):
    clf, info = train_classifier(
        texts, labels, num_classes=2, key=jax.random.key(0), config=cfg, mesh=m
    )
    runs[name] = (info["history"], clf.predict(texts, max_length=16))
(h_g, p_g), (h_l, p_l) = runs["global"], runs["local"]
assert len(h_g) == len(h_l) == 1
for a, b in zip(h_g, h_l):
    for k in ("train_loss", "val_loss"):
        assert abs(a[k] - b[k]) < 1e-4, (k, a, b)
assert np.array_equal(p_g, p_l), (p_g, p_l)
dist.check_same("the data-parallel STM's history", repr(h_g))
print("stm worker", dist.process_index(), "ok", flush=True)
"""


@pytest.mark.slow
def test_the_small_task_model_trains_data_parallel_over_two_processes(monkeypatch, capfd):
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv(ENV.ENV_HEARTBEAT, "5")
    monkeypatch.setattr(launch, "ENTRY", STM_WORKER)
    argv = ["launch", "--processes", "2", "--devices-per-process", "2", "--timeout", "300"]
    code = cli_main([*argv, "--", "x"])
    out, err = capfd.readouterr()
    assert code == 0, out[-3000:] + err[-1000:]
    assert "[p0] stm worker 0 ok" in out and "[p1] stm worker 1 ok" in out


# ------------------------------------------------------------------- the model cache


def test_tiny_models_need_no_warming(tmp_path):
    from wasp_jax.cli import warm

    assert not warm.needs_warming("plm", "tiny-llama")
    assert not warm.needs_warming("encoder", "tiny-bert")
    assert warm.needs_warming("plm", "gemma3-270m") and warm.needs_warming("stm", "")
    warm.warm_cache([("plm", "tiny-gemma3"), ("encoder", "tiny-bert")], cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing converted, no subprocess


def test_a_failed_warming_says_what_failed(tmp_path):
    from wasp_jax.cli import warm

    with pytest.raises(RuntimeError, match="converting the models into the cache failed: .*"):
        warm.warm_cache([("encoder", str(tmp_path / "no-such-model"))], cache_dir=tmp_path)


def test_api_plms_are_refused_in_a_multi_process_job(monkeypatch, tmp_path):
    from wasp_jax import config as C
    from wasp_jax.errors import ConfigError
    from wasp_jax.pipeline import methods
    from wasp_jax.pipeline.run import runner

    cfg = C.replace(C.demo_config(), **{"generation.plms": ("tiny-llama", "openai-completions:m")})
    monkeypatch.setattr(dist, "is_multi", lambda: True)
    with pytest.raises(ConfigError, match="not supported in a multi-process job"):
        runner.run(cfg, tmp_path / "w")
    assert not (tmp_path / "w").exists()
    monkeypatch.setattr(dist, "is_multi", lambda: False)
    runner._check_job(cfg, methods.resolve(cfg))  # one process: accepted

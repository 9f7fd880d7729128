"""Multi-process runs on localhost: the same outputs as one process, and a crash that resumes.

The pipeline of `test_pinned_outputs` (tiny random models, fixed seed) runs as one process
with 4 CPU devices and as 2 processes x 2 CPU devices (`wasp-jax launch`); `synthetic.jsonl`
and `privacy.json` (minus its timestamps) must be byte-identical. Then one of two processes
is killed mid-run: the other must exit non-zero within a bounded time, and rerunning the same
command must resume to the same outputs. Every subprocess runs in its own process group,
which a finalizer kills, so nothing survives a failed test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from test_pinned_outputs import digests, pinned_config

from wasp_jax import distributed as dist

pytestmark = pytest.mark.slow  # multi-process pipeline runs

ENTRY = "import sys; from wasp_jax.cli import main; sys.exit(main(sys.argv[1:]))"
#: Seconds a process waits for a dead peer's heartbeat before the job stops.
HEARTBEAT_S = 5
#: The surviving process must be gone this long after its peer was killed.
FAIL_FAST_S = 60


def _env(devices: int | None = None, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WASP_JAX_")}
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices or 1}"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONUNBUFFERED"] = "1"
    env["WASP_JAX_HEARTBEAT_S"] = str(HEARTBEAT_S)
    env.update(extra)
    return env


@pytest.fixture
def procs():
    """Popen objects to kill (whole process groups) when the test ends, however it ends."""
    started: list[subprocess.Popen] = []
    yield started
    for p in started:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=30)


def _start(procs, args, env) -> subprocess.Popen:
    p = subprocess.Popen(
        [sys.executable, "-c", ENTRY, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    procs.append(p)
    return p


def _finish(p: subprocess.Popen, timeout: float) -> tuple[int, str]:
    out, _ = p.communicate(timeout=timeout)
    return p.returncode, out


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> str:
    tmp = tmp_path_factory.mktemp("multiprocess")
    cfg = pinned_config(tmp)
    path = tmp / "config.json"
    path.write_text(cfg.to_json())
    return str(path)


@pytest.fixture(scope="module")
def one_process(config_file, tmp_path_factory) -> tuple[str, str]:
    """Digests of the outputs of the 1-process, 4-device run."""
    workdir = tmp_path_factory.mktemp("single") / "wd"
    out = subprocess.run(
        [sys.executable, "-c", ENTRY, "run", "--config", config_file, "--workdir", str(workdir)],
        env=_env(4),
        capture_output=True,
        text=True,
        timeout=600,
        start_new_session=True,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert (workdir / "release" / "synthetic.jsonl").read_text().strip()
    return digests(workdir)


def _launch_args(config_file, workdir) -> list[str]:
    return ["launch", "--processes", "2", "--devices-per-process", "2", "--"] + [
        "run",
        "--config",
        config_file,
        "--workdir",
        str(workdir),
    ]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:round .* fewer usable samples")
def test_two_processes_write_what_one_process_writes(config_file, one_process, tmp_path, procs):
    workdir = tmp_path / "wd"
    p = _start(procs, _launch_args(config_file, workdir), _env())
    code, out = _finish(p, timeout=900)
    assert code == 0, out[-4000:]
    lines = out.splitlines()
    for i in (0, 1):  # every process says who it is and which devices it has
        assert any(s.startswith(f"[p{i}]") and f"process {i} of 2" in s for s in lines), i
    assert "global mesh over 4 devices" in out
    assert sum("run finished" in s for s in lines) == 1  # one summary: process 0's
    assert digests(workdir) == one_process
    ledger = json.loads((workdir / "release" / "privacy.json").read_text())
    assert ledger["epsilon_spent"] > 0


def _job_until_first_vote(procs, config_file, workdir) -> list[subprocess.Popen]:
    """Two processes joined directly (no launcher), once process 0 has begun round 1's vote
    (the zero-shot stages are committed by then)."""
    port = dist.free_port()
    job = [
        _start(
            procs,
            ["run", "--config", config_file, "--workdir", str(workdir)],
            _env(
                2,
                WASP_JAX_COORDINATOR=f"127.0.0.1:{port}",
                WASP_JAX_NUM_PROCESSES="2",
                WASP_JAX_PROCESS_ID=str(i),
            ),
        )
        for i in (0, 1)
    ]
    seen = []
    deadline = time.monotonic() + 600
    for line in job[0].stdout:
        seen.append(line)
        if "round 1: voting" in line or time.monotonic() > deadline:
            break
    assert any("round 1: voting" in s for s in seen), "".join(seen)[-3000:]
    return job


def _kill_and_wait(job, dead: int) -> tuple[int, str, float]:
    os.killpg(job[dead].pid, signal.SIGKILL)
    killed_at = time.monotonic()
    code, rest = _finish(job[1 - dead], timeout=FAIL_FAST_S + 60)
    return code, rest, time.monotonic() - killed_at


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:round .* fewer usable samples")
def test_killed_process_stops_the_job_and_the_rerun_resumes(
    config_file, one_process, tmp_path, procs
):
    workdir = tmp_path / "wd"
    job = _job_until_first_vote(procs, config_file, workdir)
    code, rest, waited = _kill_and_wait(job, dead=1)
    assert code == 1 and waited < FAIL_FAST_S, (code, waited, rest[-2000:])
    assert "failed because another process of the job stopped" in rest, rest[-2000:]
    assert "rerun the same command to resume" in rest
    state = json.loads((workdir / "private" / "checkpoint" / "state.json").read_text())
    assert "init/0" in state["done"] and "r2/close" not in state["done"]
    # the same command again (here through the launcher) resumes to the same outputs
    p = _start(procs, _launch_args(config_file, workdir), _env())
    code, out = _finish(p, timeout=900)
    assert code == 0, out[-4000:]
    assert digests(workdir) == one_process


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:round .* fewer usable samples")
def test_a_dead_coordinator_stops_the_job(config_file, tmp_path, procs):
    """Process 0 runs the coordination service: without it the runtime ends the others."""
    job = _job_until_first_vote(procs, config_file, tmp_path / "wd")
    code, rest, waited = _kill_and_wait(job, dead=0)
    assert code != 0 and waited < FAIL_FAST_S, (code, waited, rest[-2000:])

"""`wasp-jax launch`: N local processes of one multi-process job, and the flags that join one.

    wasp-jax launch --processes 2 --devices-per-process 2 -- run --task imdb ... --workdir W

starts N copies of the `wasp-jax` command after ``--`` on this machine, each told (through
``WASP_JAX_COORDINATOR``, ``WASP_JAX_NUM_PROCESSES``, ``WASP_JAX_PROCESS_ID``) to join a job
whose coordinator listens on a free port of 127.0.0.1. Their output is streamed line by line
with a ``[p<id>]`` prefix. When one process fails the others are stopped (their whole process
groups) and `launch` exits with the failed process's status; it exits 0 only if all succeed.
``--devices-per-process D`` gives each CPU process D host devices (an XLA testing aid);
``--timeout S`` stops them all after S seconds (exit status 124).

`add_job_flags` / `join_job` give `run` and `demo` the flags of a multi-process job; see
`wasp_jax.distributed.runtime` for where the values come from.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time

from wasp_jax import distributed as dist
from wasp_jax.errors import UsageError

#: Seconds a stopped process gets to exit after SIGTERM before it is killed.
GRACE_S = 5.0

_DEVICE_FLAG = re.compile(r"--xla_force_host_platform_device_count=\S+")
#: What each process runs: the `wasp-jax` command line on the arguments after ``--``.
ENTRY = "import sys; from wasp_jax.cli import main; sys.exit(main(sys.argv[1:]))"


def add_job_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of `run` and `demo` that join a multi-process job."""
    group = parser.add_argument_group("multi-process job (see docs/distributed.md)")
    group.add_argument(
        "--coordinator",
        metavar="HOST:PORT",
        help=f"process 0's address (default ${dist.runtime.ENV_COORDINATOR})",
    )
    group.add_argument(
        "--num-processes",
        metavar="N",
        help=f"processes in the job (default ${dist.runtime.ENV_NUM_PROCESSES})",
    )
    group.add_argument(
        "--process-id",
        metavar="I",
        help=f"this process's id, 0 .. N-1 (default ${dist.runtime.ENV_PROCESS_ID})",
    )
    group.add_argument(
        "--distributed",
        action="store_true",
        help="join the job that JAX detects (Cloud TPU VM slice, SLURM, Open MPI)",
    )


def join_job(args: argparse.Namespace, before=None) -> bool:
    """Joins the job the flags or the environment describe; True if this is one of several.

    `before()` runs first, only when there is a job to join (e.g. filling the model cache).

    Raises:
      UsageError: an incomplete or inconsistent job description.
    """
    spec = dist.job_spec(
        getattr(args, "coordinator", None),
        getattr(args, "num_processes", None),
        getattr(args, "process_id", None),
        auto=bool(getattr(args, "distributed", False)),
    )
    if spec is not None and before is not None:
        before()
    return dist.initialize(spec)


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--processes", type=int, required=True, metavar="N", help="local processes to start"
    )
    parser.add_argument(
        "--devices-per-process",
        type=int,
        default=None,
        metavar="D",
        help="CPU devices per process (sets --xla_force_host_platform_device_count)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help="stop every process after S seconds and exit with status 124",
    )
    parser.add_argument(
        "command",
        nargs=argparse.REMAINDER,
        help="-- followed by a wasp-jax command and its arguments",
    )


def _env(i: int, n: int, port: int, devices: int | None) -> dict[str, str]:
    env = dict(os.environ)
    env[dist.runtime.ENV_COORDINATOR] = f"127.0.0.1:{port}"
    env[dist.runtime.ENV_NUM_PROCESSES] = str(n)
    env[dist.runtime.ENV_PROCESS_ID] = str(i)
    env["PYTHONUNBUFFERED"] = "1"
    if devices is not None:
        flags = _DEVICE_FLAG.sub("", env.get("XLA_FLAGS", "")).strip()
        env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={devices}".strip()
    return env


def _stream(i: int, proc: subprocess.Popen, lock: threading.Lock) -> None:
    for line in proc.stdout:
        with lock:
            sys.stdout.write(f"[p{i}] {line}" if line.endswith("\n") else f"[p{i}] {line}\n")
            sys.stdout.flush()


def stop_all(procs: list[subprocess.Popen], grace_s: float = GRACE_S) -> None:
    """SIGTERM to every live process group, then SIGKILL to what is left after `grace_s`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        live = [p for p in procs if p.poll() is None]
        for p in live:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace_s
        while any(p.poll() is None for p in live) and time.monotonic() < deadline:
            time.sleep(0.05)


def _status(code: int) -> int:
    return 128 - code if code < 0 else code  # killed by signal s: 128 + s, as a shell says


def main(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if args.processes < 1:
        raise UsageError(f"--processes must be >= 1, got {args.processes}")
    if args.devices_per_process is not None and args.devices_per_process < 1:
        raise UsageError(f"--devices-per-process must be >= 1, got {args.devices_per_process}")
    if not command:
        raise UsageError("give the command to launch after --, e.g. -- run --task imdb ...")
    if command[0] == "launch":
        raise UsageError("launch cannot launch itself; give a run or demo command after --")
    port = dist.free_port()
    lock = threading.Lock()
    procs, threads = [], []
    print(
        f"wasp-jax launch: {args.processes} processes, coordinator 127.0.0.1:{port}",
        file=sys.stderr,
    )
    try:
        for i in range(args.processes):
            proc = subprocess.Popen(
                [sys.executable, "-c", ENTRY, *command],
                env=_env(i, args.processes, port, args.devices_per_process),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                start_new_session=True,
            )
            procs.append(proc)
            t = threading.Thread(target=_stream, args=(i, proc, lock), daemon=True)
            t.start()
            threads.append(t)
        failed = None
        deadline = None if args.timeout is None else time.monotonic() + args.timeout
        while failed is None and any(p.poll() is None for p in procs):
            failed = next((i for i, p in enumerate(procs) if p.poll() not in (None, 0)), None)
            if deadline is not None and time.monotonic() > deadline:
                stop_all(procs)
                print(f"wasp-jax launch: timed out after {args.timeout:g} s", file=sys.stderr)
                return 124
            time.sleep(0.1)
        if failed is None:
            failed = next((i for i, p in enumerate(procs) if p.returncode != 0), None)
    except KeyboardInterrupt:
        stop_all(procs)
        return 130
    finally:
        if any(p.poll() is None for p in procs):
            stop_all(procs)
        for t in threads:
            t.join(timeout=2)
    if failed is None:
        return 0
    code = _status(procs[failed].returncode)
    print(
        f"wasp-jax launch: process {failed} exited with status {code}; the others were "
        "stopped. Rerun the same command to resume.",
        file=sys.stderr,
    )
    return code or 1

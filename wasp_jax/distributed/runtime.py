"""Joining a multi-process job on JAX's own distributed runtime.

A run spans processes when it is told where the coordinator is, how many processes there are
and which one this is: by flags (``--coordinator HOST:PORT --num-processes N --process-id I``),
by the environment (``WASP_JAX_COORDINATOR``, ``WASP_JAX_NUM_PROCESSES``,
``WASP_JAX_PROCESS_ID``, what ``wasp-jax launch`` sets), or, with ``--distributed``, by
``jax.distributed.initialize()``'s own detection of Cloud TPU, SLURM and Open MPI.

`initialize` must run before anything touches a JAX device (it is the first thing
``wasp-jax run`` does). On CPU the cross-process collectives go through gloo. Every process
logs its id and local devices; process 0 is the writer (`is_writer`). A library user calls
`initialize` (or ``jax.distributed.initialize``) before `wasp_jax.run`; the runner notices
``jax.process_count() > 1`` by itself.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket

from wasp_jax.errors import UsageError

log = logging.getLogger("wasp_jax")

ENV_COORDINATOR = "WASP_JAX_COORDINATOR"
ENV_NUM_PROCESSES = "WASP_JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "WASP_JAX_PROCESS_ID"
ENV_HEARTBEAT = "WASP_JAX_HEARTBEAT_S"

#: Seconds without a heartbeat after which a peer counts as dead (the job then stops).
DEFAULT_HEARTBEAT_S = 30


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """Where this process sits in a multi-process job.

    ``auto`` leaves coordinator, count and id to ``jax.distributed.initialize()``'s cluster
    detection (Cloud TPU, SLURM, Open MPI).
    """

    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    auto: bool = False
    heartbeat_s: int = DEFAULT_HEARTBEAT_S


def _int(value: str | int | None, what: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UsageError(f"{what} must be an integer, got {value!r}") from None


def job_spec(
    coordinator: str | None = None,
    num_processes: int | str | None = None,
    process_id: int | str | None = None,
    *,
    auto: bool = False,
    env: dict | None = None,
) -> JobSpec | None:
    """The job this process joins, from flags first, then the environment; None: one process.

    Raises:
      UsageError: an incomplete or inconsistent description (the message names the fix).
    """
    env = os.environ if env is None else env
    coordinator = coordinator or env.get(ENV_COORDINATOR) or None
    n = _int(num_processes, "--num-processes")
    if n is None:
        n = _int(env.get(ENV_NUM_PROCESSES), ENV_NUM_PROCESSES)
    i = _int(process_id, "--process-id")
    if i is None:
        i = _int(env.get(ENV_PROCESS_ID), ENV_PROCESS_ID)
    heartbeat = _int(env.get(ENV_HEARTBEAT), ENV_HEARTBEAT) or DEFAULT_HEARTBEAT_S
    if auto:
        return JobSpec(coordinator, n, i, auto=True, heartbeat_s=heartbeat)
    if coordinator is None and n is None and i is None:
        return None
    missing = [
        name
        for name, value in (
            (f"--coordinator HOST:PORT (or {ENV_COORDINATOR})", coordinator),
            (f"--num-processes N (or {ENV_NUM_PROCESSES})", n),
            (f"--process-id I (or {ENV_PROCESS_ID})", i),
        )
        if value is None
    ]
    if missing:
        raise UsageError(
            "a multi-process run needs the coordinator, the number of processes and this "
            f"process's id; missing {', '.join(missing)} (or pass --distributed to let JAX "
            "detect a Cloud TPU, SLURM or Open MPI job)"
        )
    if n < 1:
        raise UsageError(f"--num-processes must be >= 1, got {n}")
    if not 0 <= i < n:
        raise UsageError(f"--process-id must be in 0 .. {n - 1} for {n} processes, got {i}")
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(
            f"--coordinator must be HOST:PORT (e.g. 10.0.0.1:1234), got {coordinator!r}"
        )
    return JobSpec(coordinator, n, i, heartbeat_s=heartbeat)


def initialize(spec: JobSpec | None) -> bool:
    """Joins the job of `spec` (None: stays a single process); True if it joined one.

    Sets gloo as the CPU collectives (a no-op for GPU and TPU), calls
    ``jax.distributed.initialize`` and logs this process's id and local devices. A peer
    that stops sending heartbeats for ``spec.heartbeat_s`` seconds stops the whole job.
    """
    if spec is None:
        return False
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    kwargs = {}
    if not spec.auto or spec.coordinator is not None:
        kwargs = dict(
            coordinator_address=spec.coordinator,
            num_processes=spec.num_processes,
            process_id=spec.process_id,
        )
    jax.distributed.initialize(
        **kwargs,
        heartbeat_timeout_seconds=spec.heartbeat_s,
        shutdown_timeout_seconds=max(60, 4 * spec.heartbeat_s),
    )
    log.info(
        "process %d of %d on %s: local devices %s (global mesh over %d devices)",
        jax.process_index(),
        jax.process_count(),
        socket.gethostname(),
        [str(d) for d in jax.local_devices()],
        jax.device_count(),
    )
    return True


def process_count() -> int:
    """Processes in this job (1 without a job; never initializes a backend by itself)."""
    import jax

    return jax.process_count()


def process_index() -> int:
    import jax

    return jax.process_index()


def is_multi() -> bool:
    """True when this process is one of several."""
    return process_count() > 1


def is_writer() -> bool:
    """True on the one process that writes a run's files (process 0)."""
    return process_index() == 0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on `host` a moment ago (for a local coordinator)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])

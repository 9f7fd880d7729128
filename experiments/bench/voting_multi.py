"""Multi-process mode of the voting benchmark (`experiments.bench.voting --processes N`).

For each size it times the vote's sharded path (``wasp_jax.pipeline.stages.vote``'s ``shard_map``:
every device searches its synthetic rows, only the (n_priv, q) candidates are all-gathered)
twice on the same number of devices G = N x D:

* ``one_process``: 1 process with G CPU devices (the all-gather stays in the process);
* ``multi_process``: N local processes with D devices each, joined on 127.0.0.1 through
  JAX's distributed runtime (gloo collectives), as ``wasp-jax launch`` runs them.

Each process builds only its own synthetic rows (``jax.make_array_from_callback``), so memory
per process is the synthetic array / N. The JSON gives both medians and the bytes one call
moves, computed from the shapes (``bytes_per_call``), not measured.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from experiments.bench.voting_blocks import auto_block
from wasp_jax import distributed as dist

Q = 8


def bytes_per_call(n_priv: int, n_syn: int, processes: int, devices_per_process: int) -> dict:
    """What one vote moves between devices and processes, from the shapes alone."""
    g, d = processes * devices_per_process, devices_per_process
    block = 2 * n_priv * Q * (4 + 4)  # nearest + farthest: float32 values + int32 row ids
    return {
        "candidates_per_device": block,
        "received_per_device": (g - 1) * block,
        "crossing_processes_total": g * (g - d) * block,
        "received_per_process_from_others": d * (g - d) * block,
        "pipeline_release_replication_per_process": 2 * 4 * n_syn * (g - d) // g,
        "how": (
            "an all-gather of every device's (n_priv, q) float32 values and int32 ids for the "
            "nearest and the farthest histograms; each device receives the other G-1 devices' "
            "blocks (a naive all-gather; a ring moves the same per device). The pipeline then "
            "replicates the two noisy (n_syn,) float32 histograms to every process "
            "(pipeline_release_replication_per_process); the synthetic embeddings and the "
            "(n_priv, n_syn) similarities never move"
        ),
    }


def run_child(size: str, reps: int, block_size: int | None) -> None:
    """One process of a measurement; process 0 prints the JSON line."""
    dist.initialize(dist.job_spec())
    import functools

    import jax
    import numpy as np
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from wasp_jax.models.sharding import make_mesh
    from wasp_jax.pipeline.stages import vote

    n_priv, n_syn, d = (int(v) for v in size.split("x"))
    mesh = make_mesh(devices=jax.devices())  # every device of every process
    g = mesh.size
    n_pad = -(-n_syn // (16 * g)) * 16 * g
    block = auto_block(n_priv, n_pad // g) if block_size is None else block_size
    axes = tuple(mesh.axis_names)
    rows, repl = NamedSharding(mesh, P(axes)), NamedSharding(mesh, P())

    def syn_rows(index):
        sl = index[0]
        start, stop = sl.start or 0, sl.stop if sl.stop is not None else n_pad
        x = np.random.default_rng([0, start]).standard_normal((stop - start, d), np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    def host(arr):
        return lambda index: arr[index]

    labels = np.arange(n_pad, dtype=np.int32) % 2
    valid = np.arange(n_pad) < n_syn
    syn = jax.make_array_from_callback((n_pad, d), rows, syn_rows)
    syn_label = jax.make_array_from_callback((n_pad,), rows, host(labels))
    syn_mask = jax.make_array_from_callback((n_pad,), rows, host(valid))
    p = np.random.default_rng(1).standard_normal((1, n_priv, d), np.float32)
    p /= np.linalg.norm(p, axis=2, keepdims=True)
    priv = [
        jax.make_array_from_callback(a.shape, repl, host(a))
        for a in (p, (np.arange(n_priv, dtype=np.int32) % 2)[None], np.ones((1, n_priv), bool))
    ]
    fn = jax.jit(
        functools.partial(vote._sharded_votes, q=Q, block_size=block, mesh=mesh),
        out_shardings=(NamedSharding(mesh, P(None, axes)),) * 2,
    )
    args = (*priv, syn, syn_label, syn_mask)
    t0 = time.perf_counter()
    compiled = fn.lower(*args).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(reps):
        dist.barrier("rep")
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
    n_proc = jax.process_count()
    if jax.process_index() == 0:
        row = {
            "n_priv": n_priv,
            "n_syn": n_syn,
            "d": d,
            "q": Q,
            "processes": n_proc,
            "devices": g,
            "block_size": block,
            "compile_s": round(compile_s, 4),
            "vote_median_s": round(float(np.median(times)), 6),
            "vote_times_s": [round(t, 6) for t in times],
            "bytes_per_call": bytes_per_call(n_priv, n_syn, n_proc, g // n_proc),
        }
        print(json.dumps(row), flush=True)


def _env(devices: int, job: tuple[int, int, int] | None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WASP_JAX_")}
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    if job is not None:
        port, n, i = job
        env[dist.runtime.ENV_COORDINATOR] = f"127.0.0.1:{port}"
        env[dist.runtime.ENV_NUM_PROCESSES] = str(n)
        env[dist.runtime.ENV_PROCESS_ID] = str(i)
    return env


def measure(size: str, processes: int, devices: int, reps: int, block_size) -> dict:
    """Runs one measurement in fresh processes; returns process 0's JSON row (or an error)."""
    cmd = [sys.executable, "-m", "experiments.bench.voting", "--multi-child", size]
    cmd += ["--reps", str(reps)] + (["--block-size", str(block_size)] if block_size else [])
    port = dist.free_port()
    jobs = [
        subprocess.Popen(
            cmd,
            env=_env(devices, (port, processes, i) if processes > 1 else None),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for i in range(processes)
    ]
    t0 = time.perf_counter()
    outs = [j.communicate() for j in jobs]
    if any(j.returncode for j in jobs):
        return {"size": size, "processes": processes, "error": outs[0][1][-2000:]}
    row = json.loads(outs[0][0].strip().splitlines()[-1])
    row["subprocess_wall_s"] = round(time.perf_counter() - t0, 2)
    return row


def main_multi(args, sizes) -> list[dict]:
    """For each size: 1 process x (N x D) devices, then N processes x D devices."""
    n, d = args.processes, args.devices_per_process
    results = []
    for size in sizes:
        reps = args.reps or 3
        one = measure(size, 1, n * d, reps, args.block_size)
        multi = measure(size, n, d, reps, args.block_size)
        results.append({"size": size, "one_process": one, "multi_process": multi})
    return results

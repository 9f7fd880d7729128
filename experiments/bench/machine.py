"""What every benchmark records about the machine, and the guard that keeps contended runs out.

A timing taken while other work runs on the machine is not a result: PyTorch's thread pool
degrades far more than XLA's under contention, so a contended ratio flatters one side.
Every benchmark therefore

* reads the 1-minute load average before it starts and refuses to run (exit status 2,
  saying why) when it is above ``MAX_LOAD`` unless ``--allow-contended`` is given, in which
  case the JSON is marked ``"contended": true``;
* records the load average and the CPU steal time (from ``/proc/stat``; the share of CPU
  time the hypervisor gave to other guests) at the start and at the end;
* interleaves the two sides round by round and reports the median and the spread of the
  rounds (:func:`summary`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

MAX_LOAD = 1.5


def add_guard_flag(parser: argparse.ArgumentParser) -> None:
    """Adds ``--allow-contended`` to a benchmark's argument parser."""
    parser.add_argument(
        "--allow-contended",
        action="store_true",
        help=f"run even if the 1-minute load average is above {MAX_LOAD} (marked contended)",
    )


def _cpu_times() -> tuple[int, int] | None:
    """(steal, total) jiffies of all CPUs since boot, or None where /proc/stat is absent."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    values = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
    return (values[7] if len(values) > 7 else 0), sum(values)


def snapshot() -> dict:
    """Load average and cumulative CPU counters now."""
    times = _cpu_times()
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "loadavg": [round(v, 2) for v in os.getloadavg()],
        "_cpu": times,
    }


def start(args: argparse.Namespace) -> dict:
    """The start snapshot; exits with status 2 on a contended machine unless allowed."""
    snap = snapshot()
    load = snap["loadavg"][0]
    if load > MAX_LOAD and not getattr(args, "allow_contended", False):
        print(
            f"refusing to benchmark: the 1-minute load average is {load:.2f} (> {MAX_LOAD}), "
            "so other work is running and the timings would not be a result; wait until the "
            "machine is idle or pass --allow-contended (the JSON is then marked contended)",
            file=sys.stderr,
        )
        raise SystemExit(2)
    snap["contended"] = load > MAX_LOAD
    return snap


def finish(begin: dict) -> dict:
    """The ``machine`` record of a run: load and steal at start and end, cores, contended."""
    end = snapshot()
    steal = None
    if begin["_cpu"] and end["_cpu"]:
        d_steal = end["_cpu"][0] - begin["_cpu"][0]
        d_total = end["_cpu"][1] - begin["_cpu"][1]
        steal = round(100.0 * d_steal / d_total, 3) if d_total > 0 else 0.0
    return {
        "cpus": os.cpu_count(),
        "start": begin["time"],
        "end": end["time"],
        "loadavg_start": begin["loadavg"],
        "loadavg_end": end["loadavg"],
        "cpu_steal_percent": steal,
        "contended": bool(begin.get("contended", False)),
        "max_load_for_a_result": MAX_LOAD,
    }


def summary(values: list[float]) -> dict:
    """Median and spread of per-round values (the rounds are kept too)."""
    if not values:
        raise ValueError("no rounds to summarise")
    med = statistics.median(values)
    return {
        "median": med,
        "min": min(values),
        "max": max(values),
        "spread_percent": 100.0 * (max(values) - min(values)) / med if med else 0.0,
        "rounds": list(values),
    }

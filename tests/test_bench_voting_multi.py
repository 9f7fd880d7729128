"""The multi-process mode of the voting benchmark: its byte counts and a tiny measurement."""

import itertools

import numpy as np
import pytest

from experiments.bench import voting_multi


def _all_gather_bytes(n_priv, n_syn, processes, devices_per_process):
    """The byte counts by enumeration: every ordered (sender, receiver) device pair of a naive
    all-gather moves the sender's arrays; the pipeline then gathers onto each process the
    entries of two (n_syn,) float32 histograms, split evenly over the devices, that the
    other processes hold."""
    q = voting_multi.Q
    arrays = [np.zeros((n_priv, q), dt) for dt in (np.float32, np.int32)] * 2  # near + far
    block = sum(a.nbytes for a in arrays)
    devices = list(itertools.product(range(processes), range(devices_per_process)))
    received = dict.fromkeys(devices, 0)
    from_others = dict.fromkeys(range(processes), 0)
    crossing = 0
    for src, dst in itertools.permutations(devices, 2):
        received[dst] += block
        if src[0] != dst[0]:
            crossing += block
            from_others[dst[0]] += block
    assert len(set(received.values())) == 1 and len(set(from_others.values())) == 1
    owner = np.arange(n_syn) * len(devices) // n_syn // devices_per_process  # its process
    histogram = np.zeros(n_syn, np.float32)
    replicated = 2 * histogram[owner != 0].nbytes  # what process 0 receives
    return {
        "candidates_per_device": block,
        "received_per_device": received[devices[0]],
        "crossing_processes_total": crossing,
        "received_per_process_from_others": from_others[0],
        "pipeline_release_replication_per_process": replicated,
    }


@pytest.mark.parametrize(
    "n_priv, n_syn, processes, devices_per_process",
    [(2000, 1_000_000, 2, 1), (2000, 1_000_000, 1, 2), (100, 5400, 2, 2), (7, 960, 3, 4)],
)
def test_bytes_per_call_match_an_enumeration(n_priv, n_syn, processes, devices_per_process):
    got = voting_multi.bytes_per_call(n_priv, n_syn, processes, devices_per_process)
    want = _all_gather_bytes(n_priv, n_syn, processes, devices_per_process)
    assert {k: got[k] for k in want} == want


def test_bytes_per_call_recorded_values():
    b = voting_multi.bytes_per_call(2000, 1_000_000, processes=2, devices_per_process=1)
    assert b["candidates_per_device"] == b["received_per_device"] == 256_000
    assert b["crossing_processes_total"] == 512_000
    assert b["pipeline_release_replication_per_process"] == 4_000_000
    one = voting_multi.bytes_per_call(2000, 1_000_000, processes=1, devices_per_process=2)
    assert one["crossing_processes_total"] == 0


@pytest.mark.slow
def test_a_tiny_two_process_measurement_runs():
    row = voting_multi.measure("8x100x16", processes=2, devices=1, reps=1, block_size=None)
    assert "error" not in row, row.get("error")
    assert (row["processes"], row["devices"], row["n_syn"]) == (2, 2, 100)
    assert row["vote_median_s"] > 0 and len(row["vote_times_s"]) == 1
    assert row["bytes_per_call"]["received_per_process_from_others"] == 2 * 8 * 8 * 8

"""The multi-process mode of the voting benchmark: its byte counts and a tiny measurement."""

import pytest

from experiments.bench import voting_multi


def test_bytes_per_call_from_the_shapes():
    b = voting_multi.bytes_per_call(2000, 1_000_000, processes=2, devices_per_process=1)
    block = 2 * 2000 * 8 * 8  # two histograms x (n_priv, q) x (float32 + int32)
    assert b["candidates_per_device"] == block == 256_000
    assert b["received_per_device"] == block
    assert b["crossing_processes_total"] == 2 * block
    assert b["received_per_process_from_others"] == block
    assert b["pipeline_release_replication_per_process"] == 4_000_000
    one = voting_multi.bytes_per_call(2000, 1_000_000, processes=1, devices_per_process=2)
    assert one["crossing_processes_total"] == 0 and one["received_per_device"] == block
    four = voting_multi.bytes_per_call(100, 5400, processes=2, devices_per_process=2)
    assert four["received_per_device"] == 3 * 2 * 100 * 8 * 8
    assert four["crossing_processes_total"] == 4 * 2 * 2 * 100 * 8 * 8


@pytest.mark.slow
def test_a_tiny_two_process_measurement_runs():
    row = voting_multi.measure("8x100x16", processes=2, devices=1, reps=1, block_size=None)
    assert "error" not in row, row.get("error")
    assert (row["processes"], row["devices"], row["n_syn"]) == (2, 2, 100)
    assert row["vote_median_s"] > 0 and len(row["vote_times_s"]) == 1
    assert row["bytes_per_call"]["received_per_process_from_others"] == 2 * 8 * 8 * 8

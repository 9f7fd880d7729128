"""The benchmarks' machine guard: refuses a loaded machine, records load and steal, summarises."""

import argparse

import chex
import pytest

from experiments.bench import machine


def _args(allow: bool) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    machine.add_guard_flag(parser)
    return parser.parse_args(["--allow-contended"] if allow else [])


def test_refuses_a_loaded_machine_unless_allowed(monkeypatch, capsys):
    monkeypatch.setattr(machine.os, "getloadavg", lambda: (3.2, 2.0, 1.0))
    with pytest.raises(SystemExit) as exc:
        machine.start(_args(allow=False))
    assert exc.value.code == 2
    assert "load average is 3.20" in capsys.readouterr().err
    begin = machine.start(_args(allow=True))
    record = machine.finish(begin)
    assert record["contended"] is True
    assert record["loadavg_start"][0] == 3.2


def test_idle_machine_runs_and_records_steal(monkeypatch):
    monkeypatch.setattr(machine.os, "getloadavg", lambda: (0.2, 0.3, 0.4))
    stats = iter([[0, 0, 0, 100, 0, 0, 0, 0], [0, 0, 0, 190, 0, 0, 0, 10]])

    def fake_cpu_times():
        v = next(stats)
        return v[7], sum(v)

    monkeypatch.setattr(machine, "_cpu_times", fake_cpu_times)
    record = machine.finish(machine.start(_args(allow=False)))
    assert record["contended"] is False
    assert record["cpu_steal_percent"] == pytest.approx(10.0)


def test_summary_median_and_spread():
    s = machine.summary([2.0, 1.0, 4.0])
    chex.assert_trees_all_close(
        (s["median"], s["min"], s["max"], s["spread_percent"]), (2.0, 1.0, 4.0, 150.0)
    )
    with pytest.raises(ValueError):
        machine.summary([])

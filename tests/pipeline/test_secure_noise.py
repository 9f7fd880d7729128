"""Secure noise, pinned by its properties (its bytes differ in every workdir by design).

A run with `privacy.noise = "secure"` (the default) keys every DP draw with a secret from the
OS's CSPRNG: its ledger says so, its releases lie on the vote lattice, two workdirs with one
seed draw different noise, and a crash between a persisted release and the commit never
draws that release again, not even when the resumed process embeds the private set
differently (other hardware, other precision).
"""

import json
import math
import pathlib

import numpy as np
import pytest
from pipeline_fakes import FakeEmbedder, fail_on_call, loaders

from kernels import noise as lattice
from tests.private_files import first_private
from wasp_jax import config as C
from wasp_jax.pipeline.methods import common as rounds
from wasp_jax.pipeline.methods import privacy_plan
from wasp_jax.pipeline.run import runner

pytestmark = pytest.mark.slow  # pipeline runs with secret noise


class Crash(Exception):
    pass


def secure_config(**changes) -> C.WaspConfig:
    base = {
        "data.private_path": first_private(24),
        "generation.plms": ("fake-a", "fake-b"),
        "generation.budget": 36,
        "generation.rounds": 2,
        "generation.batch_size": 8,
        "voting.q": 4,
        "selection.s": 4,
        "generation.num_prompt_variants": 3,
        "runtime.progress": False,
    }
    base.update(changes)
    cfg = C.replace(C.base_config(), **base)
    assert cfg.privacy.noise == "secure"  # the default
    return cfg


@pytest.fixture(autouse=True)
def no_report(monkeypatch):
    monkeypatch.setattr(runner, "_finish", lambda *a: None)


def hooks(load_embedder=None, on_stage=None):
    g, e = loaders()
    return runner.Hooks(load_generator=g, load_embedder=load_embedder or e, on_stage=on_stage)


def find(workdir: pathlib.Path, name: str) -> pathlib.Path:
    """The one file called `name` in the run's folder (wherever its layout puts it)."""
    (path,) = list(pathlib.Path(workdir).rglob(name))
    return path


def votes(workdir: pathlib.Path, t: int) -> np.ndarray:
    return np.load(find(workdir, f"votes_r{t}.npy"))


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("secure")
    for name in ("a", "b"):
        runner.run(secure_config(), root / name, hooks=hooks())
    return root / "a", root / "b"


def test_ledger_names_secure_noise_and_its_accountant(two_runs):
    ledger = json.loads(find(two_runs[0], "privacy.json").read_text())
    assert ledger["noise"] == "secure" and ledger["private"] is True
    assert "discrete Gaussian" in ledger["accountant"]
    assert "NOT DP" not in ledger.get("note", "")
    assert ledger["rounds_released"] == 2
    assert 0 < ledger["epsilon_spent"] <= secure_config().privacy.epsilon + 1e-9


def test_releases_lie_on_the_vote_lattice(two_runs):
    """Every released value is an integer number of lattice steps (a power of two no larger
    than the votes' own step 2^-(Q-1)): the noise adds no floating-point fingerprint."""
    cfg = secure_config()
    plan = privacy_plan(cfg)
    step = lattice.lattice_step(plan.sigma, 2.0 ** -(cfg.voting.q - 1))
    assert step <= 2.0 ** -(cfg.voting.q - 1) and math.log2(step).is_integer()
    for t in (1, 2):
        units = votes(two_runs[0], t).astype(np.float64) / step
        np.testing.assert_array_equal(units, np.round(units))
        # noise of about sigma / step >= 64 lattice units: far from the clean votes' grid
        assert np.abs(units).max() > 64


def test_two_workdirs_with_one_seed_draw_different_noise(two_runs):
    a, b = two_runs
    for t in (1, 2):
        va, vb = votes(a, t), votes(b, t)
        if va.shape == vb.shape:
            assert np.mean(va == vb) < 0.05
    # the public choices (seeded) agree: round 1 votes on the same zero-shot samples
    assert votes(a, 1).shape == votes(b, 1).shape
    assert np.mean(votes(a, 1) == votes(b, 1)) < 0.05


class ShiftedEmbedder(FakeEmbedder):
    """The same model on other hardware: embeddings a little off (as bf16 is from f32)."""

    def embed(self, texts, *a, **k):
        out = np.asarray(super().embed(texts, *a, **k), np.float32)
        out = out + np.float32(1e-2) * np.sin(np.arange(out.shape[-1], dtype=np.float32))
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_crash_after_the_release_then_resume_on_other_inputs_releases_once(tmp_path, monkeypatch):
    """Round 2's votes are persisted, then the run dies before the round commits. The
    resume embeds the private set differently; it must reuse the persisted release, never
    draw round 2's noise on the new embeddings."""
    real = rounds.selection.select_good_bad
    flaky = fail_on_call(real, 2, Crash("after round 2's release, before its commit"))
    monkeypatch.setattr(rounds.selection, "select_good_bad", flaky)
    with pytest.raises(Crash):
        runner.run(secure_config(), tmp_path, hooks=hooks())
    released = find(tmp_path, "votes_r2.npy").read_bytes()
    ledger = json.loads(find(tmp_path, "privacy.json").read_text())
    assert ledger["rounds_released"] == 1  # the commit of round 2 never happened

    drawn = []
    real_round_votes = rounds.round_votes
    monkeypatch.setattr(rounds.selection, "select_good_bad", real)
    monkeypatch.setattr(
        rounds, "round_votes", lambda *a, **k: drawn.append(1) or real_round_votes(*a, **k)
    )
    runner.run(secure_config(), tmp_path, hooks=hooks(lambda spec, **kw: ShiftedEmbedder()))
    assert drawn == []  # nothing was drawn again
    assert find(tmp_path, "votes_r2.npy").read_bytes() == released
    ledger = json.loads(find(tmp_path, "privacy.json").read_text())
    assert [r["round"] for r in ledger["releases"]].count(2) == len(ledger["releases"]) // 2
    assert ledger["rounds_released"] == 2
    assert ledger["epsilon_spent"] <= secure_config().privacy.epsilon + 1e-9

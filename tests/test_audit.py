"""The empirical privacy audit: its statistics, its datasets, and that it can fail.

The secure release must stay within its claim; every planted bug must be caught (a lower
bound above the claim). Trial counts are set so that each of these holds with probability
far above 99.9 % (see the comments), while each test stays under about 30 s.
"""

import json
import math
import pathlib

import chex
import numpy as np
import pytest
from scipy import stats

from wasp_jax import config as config_lib
from wasp_jax.audit.bugs import (
    Clean,
    _normals,
    applies,
    float32_normal_values,
    scores,
)
from wasp_jax.audit.data import AuditedRelease, neighbours, releases
from wasp_jax.audit.runner import audit, audit_release
from wasp_jax.cli import main as cli_main
from wasp_jax.pipeline.methods.wasp_plus import PLUS_HISTOGRAMS
from wasp_jax.privacy.accounting import calibrate_sigma
from wasp_jax.privacy.audit_stats import cp_lower, cp_upper, release_epsilon, threshold_audit
from wasp_jax.privacy.release_kinds import kind_sensitivity

REPO = pathlib.Path(__file__).resolve().parents[1]
DEMO = str(REPO / "experiments" / "configs" / "demo.py")
PLUS = str(REPO / "experiments" / "configs" / "wasp_plus_replay_imdb.py")


def test_clopper_pearson_known_values():
    # two-sided 95 % intervals (each side at 2.5 %) from the exact beta quantiles
    chex.assert_trees_all_close(
        (float(cp_lower(5, 10, 0.025)), float(cp_upper(5, 10, 0.025))),
        (0.187086, 0.812914),
        atol=1e-6,
    )
    chex.assert_trees_all_close(float(cp_upper(0, 10, 0.025)), 1 - 0.025**0.1, atol=1e-12)
    chex.assert_trees_all_close(float(cp_lower(10, 10, 0.025)), 0.025**0.1, atol=1e-12)
    chex.assert_trees_all_close(
        (float(cp_lower(1, 20, 0.025)), float(cp_upper(1, 20, 0.025))),
        (0.001265, 0.248733),
        atol=1e-6,
    )
    assert float(cp_lower(0, 10, 0.025)) == 0.0 and float(cp_upper(10, 10, 0.025)) == 1.0


def test_perfect_separation_bound_is_exact_in_both_orientations():
    n_held = 900  # of 1000 trials, 10 % choose the test
    expected = math.log((0.025 ** (1 / n_held) - 1e-5) / (1 - 0.025 ** (1 / n_held)))
    for d, dp in ((np.ones(1000), -np.ones(1000)), (-np.ones(1000), np.ones(1000))):
        bound = threshold_audit(d, dp, delta=1e-5)
        chex.assert_trees_all_close(bound.eps_lb, expected, rtol=1e-9)
        assert (bound.tp, bound.fp, bound.n, bound.selected_on) == (900, 0, 900, 100)


def test_bound_covers_the_true_ratio_of_the_chosen_test():
    """Over many audits of two known normals, the chosen test's true log((TPR - delta) / FPR)
    is below the reported bound at most 5 % of the time (plus binomial slack)."""
    rng = np.random.default_rng(0)
    mu, delta, misses, reps = 1.0, 1e-5, 0, 300
    for _ in range(reps):
        b = threshold_audit(rng.normal(mu, 1, 2000), rng.normal(0, 1, 2000), delta=delta)
        t = b.threshold
        if b.direction == "D if score >= threshold":
            tpr, fpr = stats.norm.sf(t - mu), stats.norm.sf(t)
        elif b.direction == "D' if score <= threshold":
            tpr, fpr = stats.norm.cdf(t), stats.norm.cdf(t - mu)
        else:
            pytest.fail(f"chose the wrong orientation: {b.direction}")
        truth = math.log(max(tpr - delta, 1e-300) / fpr)
        misses += b.eps_lb > max(truth, 0.0)
    assert misses / reps <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / reps)


def test_no_difference_gives_no_bound():
    rng = np.random.default_rng(1)
    bound = threshold_audit(rng.normal(size=20_000), rng.normal(size=20_000), delta=1e-5)
    assert bound.eps_lb < 0.1


def test_bad_scores_are_refused():
    with pytest.raises(ValueError, match="two \\(n,\\) arrays"):
        threshold_audit(np.zeros(10), np.zeros(11), delta=1e-5)
    with pytest.raises(ValueError, match="finite"):
        threshold_audit(np.array([0.0, np.nan] * 10), np.zeros(20), delta=1e-5)


def _release(kind, adjacency, q=8, num_plms=3):
    hist = ("nearest", "farthest")
    rel = AuditedRelease(kind, 1.0, 1.0, q, hist, adjacency, 1, num_plms)
    return rel


@pytest.mark.parametrize("adjacency", ["add_remove", "replace_one"])
@pytest.mark.parametrize("kind", ["votes", "per_sample", "per_plm", "per_cluster", "usefulness"])
def test_canary_reaches_the_derived_sensitivity(kind, adjacency):
    rel = _release(kind, adjacency)
    for blocks in (1, 3):
        clean = Clean(rel, neighbours(rel, blocks))  # raises if the blocks differ
        chex.assert_trees_all_close(clean.norm, rel.derived_sensitivity(), rtol=1e-6)


def test_blocked_trials_match_one_call_per_trial_and_the_noise():
    rel = releases(config_lib.load_config(DEMO))[0]
    single, blocked = neighbours(rel, 1), neighbours(rel, 16)
    a = scores("secure", rel, single, Clean(rel, single), "d", 400)
    b = scores("secure", rel, blocked, Clean(rel, blocked), "d", 1600)
    assert stats.ks_2samp(a, b).pvalue > 1e-4
    # each score is the canary's half change plus one normal-like coordinate of sigma
    ref = stats.norm(loc=rel.derived_sensitivity() / 2, scale=rel.sigma)
    assert stats.kstest(b, ref.cdf).pvalue > 1e-4


def test_float32_values_cover_every_jax_normal_draw():
    words = np.random.default_rng(2).integers(0, 2**32, (4000, 2), dtype=np.uint32)
    draws = np.asarray(_normals(words, 250)).ravel()
    assert np.isin(draws, float32_normal_values()).all()
    assert float32_normal_values().size == 2**23


@pytest.mark.parametrize("path", [DEMO, PLUS])
def test_secure_releases_stay_within_their_claims(path):
    result, _ = audit(config_lib.load_config(path), trials=10_000, blocks=32)
    for row in result["releases"]:
        # 10 000 trials bound ~1.2 (demo) and ~0.8 (WASP+) against claims 2.7 and 1.8
        assert row["eps_lb"] <= row["epsilon_claimed"], row
        assert 0 < row["eps_lb"], row  # and the audit has some power
    assert result["violations"] == []


@pytest.mark.parametrize("bug", ["seeded", "float32"])
def test_exact_attacks_are_caught_with_few_trials(bug):
    rel = releases(config_lib.load_config(DEMO))[0]
    row, _ = audit_release(rel, bug, trials=2000, delta=1e-5, blocks=32)
    # 1800 held-out trials separated perfectly: log(1800 / 3.7) ~ 6.2 > 2.7
    assert row["eps_lb"] > 6.0 and row["exceeds_claim"], row


def _per_cluster_release(claim: float) -> AuditedRelease:
    sens = kind_sensitivity("per_cluster", q=8, num_histograms=2)
    sigma = calibrate_sigma(claim, 1e-5, num_rounds=1, l2_sensitivity=sens)
    return AuditedRelease("per_cluster", sigma, sens, 8, PLUS_HISTOGRAMS, "add_remove")


@pytest.mark.parametrize("bug", ["sigma_halved", "q1_sensitivity"])
def test_noise_too_small_is_caught(bug):
    # Both bugs double sigma / sensitivity's inverse (Q = 1 sums to 1 instead of 1.99). At a
    # claim of 2.7, 100 000 trials bound the bug at 3.4 +- 0.2 (simulated): 3.5 sigma above.
    rel = _per_cluster_release(2.7)
    row, _ = audit_release(rel, bug, trials=100_000, delta=1e-5, blocks=64)
    assert row["exceeds_claim"], row
    chex.assert_trees_all_close(row["epsilon_claimed"], 2.7, rtol=1e-3)


def test_q1_bug_applies_to_vote_sums_only():
    assert not applies("q1_sensitivity", _release("usefulness", "add_remove"))
    assert applies("q1_sensitivity", _release("per_cluster", "add_remove"))
    assert not applies("q1_sensitivity", _release("votes", "add_remove", q=1))


def test_claim_is_the_plan_release_epsilon():
    cfg = config_lib.apply_overrides(
        config_lib.load_config(DEMO), ["generation.rounds=1", "privacy.epsilon=1.0"]
    )
    rel = releases(cfg)[0]
    chex.assert_trees_all_close(release_epsilon(rel.sigma, rel.sensitivity, 1e-5), 1.0, rtol=1e-4)


def test_cli_writes_json_and_plot(tmp_path, capsys):
    out = tmp_path / "audit"
    code = cli_main(
        ["audit", "--config", DEMO, "--trials", "200", "--bugs", "seeded", "--out", str(out)]
    )
    assert code == 0, capsys.readouterr().err
    result = json.loads((out / "audit.json").read_text())
    assert [r["mechanism"] for r in result["releases"]] == ["secure", "seeded"]
    for key in ("epsilon_claimed", "eps_lb", "sigma", "trials", "threshold", "tp", "fp", "seconds"):
        assert key in result["releases"][0]
    assert result["delta"] == 1e-5 and result["command"].startswith("wasp-jax audit")
    assert (out / "audit.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--bugs", "nonsense"], "unknown mechanism"),
        (["--epsilon", "-1"], "--epsilon must be > 0"),
        (["--kinds", "per_plm"], "releases no"),
        (["--set", "privacy.epsilon=inf"], "epsilon is inf"),
        (["--trials", "5"], "trials must be an integer >= 20"),
    ],
)
def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "audit"
    code = cli_main(["audit", "--config", DEMO, "--trials", "100", "--out", str(out), *args])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()

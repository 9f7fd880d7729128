"""Privacy accounting: sensitivity (analytic and brute force), calibration, ledger."""

import math

import jax
import numpy as np
import pytest
from wasp_jax.kernels import voting

from wasp_jax import privacy
from wasp_jax.pipeline.methods import with_method
from wasp_jax.privacy import PrivacyBudgetExceededError, PrivacyLedger, accounting

Q_VALUES = (1, 2, 3, 4, 8, 16)


def test_sensitivity_reference_values():
    assert privacy.l2_sensitivity(8) == pytest.approx(1.632981, abs=1e-6)
    assert privacy.l2_sensitivity(8, adjacency="replace_one") == pytest.approx(2.309384, abs=1e-6)
    assert privacy.l2_sensitivity(1, num_histograms=1) == 1.0
    assert privacy.l2_sensitivity(8, num_histograms=1) == pytest.approx(2 / math.sqrt(3), 1e-3)


def test_classic_delta_and_classic_sigma():
    assert privacy.classic_delta(8) == 4.0
    assert privacy.classic_delta(16) == 4.0
    assert privacy.classic_delta(1, contrastive=False) == 1.0
    assert privacy.classic_delta(8, contrastive=False) == 2.0
    # No XOR bug: Q=4 is 2 - 1/8 per histogram (the original computed 1.0).
    assert privacy.classic_delta(4, contrastive=False) == 1.875
    assert privacy.classic_delta(3) == 3.5
    sigma = privacy.calibrate_sigma(4, 1e-5, num_rounds=4, l2_sensitivity=4.0, accountant="classic")
    assert round(sigma, 4) == 9.6896
    aug_pe = privacy.calibrate_sigma(
        4, 1e-5, num_rounds=4, l2_sensitivity=1.0, accountant="classic"
    )
    assert round(aug_pe, 4) == 2.4224


@pytest.mark.parametrize(
    "adjacency,accountant,want",
    [
        ("add_remove", "rdp", (13.212, 7.019, 3.781, 2.083)),
        ("replace_one", "rdp", (18.685, 9.926, 5.347, 2.945)),
        pytest.param("add_remove", "pld", (12.184, 6.512, 3.531, 1.960), marks=pytest.mark.slow),
        pytest.param("replace_one", "pld", (17.231, 9.209, 4.994, 2.772), marks=pytest.mark.slow),
    ],
)
def test_sigma_reference_values(adjacency, accountant, want):
    """RDP (the default: it covers the discrete Gaussian) and PLD (continuous noise only)."""
    sens = privacy.l2_sensitivity(8, adjacency=adjacency)
    got = [
        privacy.calibrate_sigma(eps, 1e-5, num_rounds=4, l2_sensitivity=sens, accountant=accountant)
        for eps in (1, 2, 4, 8)
    ]
    np.testing.assert_allclose(got, want, atol=1.5e-3)


@pytest.mark.parametrize("accountant", ["pld", "rdp"])
@pytest.mark.parametrize("epsilon,num_rounds", [(1.0, 4), (4.0, 4), (2.0, 10)])
def test_calibration_round_trip(accountant, epsilon, num_rounds):
    sens = privacy.l2_sensitivity(8)
    sigma = privacy.calibrate_sigma(
        epsilon, 1e-5, num_rounds=num_rounds, l2_sensitivity=sens, accountant=accountant
    )
    spent = privacy.epsilon_of([sigma / sens] * num_rounds, 1e-5, accountant=accountant)
    assert spent <= epsilon
    assert spent >= 0.99 * epsilon


def test_infinite_epsilon_means_no_noise():
    for accountant in privacy.Accountant:
        assert (
            privacy.calibrate_sigma(
                math.inf, 1e-5, num_rounds=4, l2_sensitivity=1.6, accountant=accountant
            )
            == 0.0
        )
    ledger = PrivacyLedger(epsilon=math.inf, delta=1e-5)
    ledger.record(0, "votes", sigma=0.0, sensitivity=1.6)
    assert ledger.epsilon_spent() == math.inf
    assert PrivacyLedger.from_json(ledger.to_json()) == ledger


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(epsilon=0.0), "epsilon"),
        (dict(epsilon=-1.0), "epsilon"),
        (dict(delta=0.0), "delta"),
        (dict(delta=1.0), "delta"),
        (dict(num_rounds=0), "num_rounds"),
        (dict(l2_sensitivity=0.0), "l2_sensitivity"),
        (dict(accountant="gauss"), "accountant"),
    ],
)
def test_calibrate_validation_names_field(kwargs, field):
    args = dict(epsilon=4.0, delta=1e-5, num_rounds=4, l2_sensitivity=1.6, accountant="classic")
    args.update(kwargs)
    eps, delta = args.pop("epsilon"), args.pop("delta")
    with pytest.raises(ValueError, match=field):
        privacy.calibrate_sigma(eps, delta, **args)


@pytest.mark.parametrize(
    "kwargs,field",
    [(dict(q=0), "q"), (dict(num_histograms=0), "num_histograms"), (dict(adjacency="x"), "adj")],
)
def test_sensitivity_validation_names_field(kwargs, field):
    args = dict(q=8) | kwargs
    with pytest.raises(ValueError, match=field):
        privacy.l2_sensitivity(args.pop("q"), **args)


def test_ledger_records_refuses_and_is_idempotent(tmp_path):
    sens = privacy.l2_sensitivity(8)
    sigma = privacy.calibrate_sigma(4.0, 1e-5, num_rounds=4, l2_sensitivity=sens)
    ledger = PrivacyLedger(epsilon=4.0, delta=1e-5)
    for t in range(3):
        ledger.record(t, "votes", sigma=sigma, sensitivity=sens)
    three = ledger.epsilon_spent()
    assert 0 < three < 4.0
    path = tmp_path / "ledger.json"
    path.write_text(ledger.to_json())
    resumed = PrivacyLedger.from_json(path.read_text())
    assert resumed == ledger
    resumed.record(2, "votes", sigma=sigma, sensitivity=sens)  # replayed round: no new spend
    assert len(resumed.releases) == 3 and resumed.epsilon_spent() == three
    resumed.record(3, "votes", sigma=sigma, sensitivity=sens)
    assert resumed.epsilon_spent() <= 4.0
    with pytest.raises(PrivacyBudgetExceededError, match="budget"):
        resumed.record(4, "votes", sigma=sigma, sensitivity=sens)
    assert len(resumed.releases) == 4
    with pytest.raises(ValueError, match="already recorded"):
        resumed.record(1, "votes", sigma=2 * sigma, sensitivity=sens)
    with pytest.raises(ValueError, match="sigma"):
        resumed.record(9, "x", sigma=-1.0, sensitivity=sens)
    with pytest.raises(ValueError, match="adjacency"):
        resumed.record(9, "x", sigma=sigma, sensitivity=sens, adjacency="replace_one")
    with pytest.raises(ValueError, match="delta"):
        PrivacyLedger(epsilon=1.0, delta=2.0)


def _released_pair(vote, case, priv_mask, q):
    near, far = vote(*case, priv_mask=priv_mask, q=q)
    return np.concatenate([np.asarray(near, np.float64), np.asarray(far, np.float64)])


#: Q values the brute force covers in `make test-fast`; the others run with the slow tests.
FAST_Q = (1, 4, 8)


@pytest.mark.parametrize(
    "q", [pytest.param(q, marks=() if q in FAST_Q else pytest.mark.slow) for q in Q_VALUES]
)
def test_bruteforce_neighbours_respect_and_reach_sensitivity(q):
    """Every add/remove and replace-one neighbour moves (H+, H-) by <= l2_sensitivity in L2."""
    rng = np.random.default_rng(q)
    n_priv, n_syn, d = 13, 60, 6
    x = rng.standard_normal((n_priv + 1, d))
    syn = rng.standard_normal((n_syn, d))
    unit = lambda a: (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)
    # Class 2 has a single synthetic candidate (pool smaller than q).
    syn_label = np.where(np.arange(n_syn) == 0, 2, np.arange(n_syn) % 2).astype(np.int32)
    priv_label = rng.integers(0, 3, n_priv + 1).astype(np.int32)
    priv_label[-1] = 1 - priv_label[0] if priv_label[0] < 2 else 0
    case = (unit(x), priv_label, unit(syn), syn_label)
    vote = jax.jit(voting.top_q_votes, static_argnames=("q",))
    base_mask = np.arange(n_priv + 1) < n_priv  # the extra row is the candidate replacement
    base = _released_pair(vote, case, base_mask, q)
    add_remove = privacy.l2_sensitivity(q)
    replace = privacy.l2_sensitivity(q, adjacency="replace_one")
    worst_ar, worst_r = 0.0, 0.0
    for i in range(n_priv):
        removed = base_mask.copy()
        removed[i] = False
        worst_ar = max(worst_ar, np.linalg.norm(_released_pair(vote, case, removed, q) - base))
        removed[-1] = True
        worst_r = max(worst_r, np.linalg.norm(_released_pair(vote, case, removed, q) - base))
    assert worst_ar <= add_remove + 1e-6
    assert worst_r <= replace + 1e-6
    assert worst_ar == pytest.approx(add_remove, abs=1e-6)
    assert worst_r == pytest.approx(replace, abs=1e-6)


def test_huge_epsilon_uses_exact_gdp_without_blowing_up():
    """A PLD grid for tiny noise would need GiBs; the exact mu-GDP formula is used instead."""
    sens = privacy.l2_sensitivity(8)
    sigma = privacy.calibrate_sigma(1e5, 1e-5, num_rounds=4, l2_sensitivity=sens, accountant="pld")
    assert 0 < sigma < 0.05
    spent = privacy.epsilon_of([sigma / sens] * 4, 1e-5, accountant="pld")
    assert 0.99e5 <= spent <= 1e5
    # The closed form agrees with dp_accounting's PLD where both are cheap.
    z = privacy.calibrate_sigma(4.0, 1e-5, num_rounds=4, l2_sensitivity=1.0, accountant="pld")
    assert accounting._gdp_epsilon(2.0 / z, 1e-5) == pytest.approx(4.0, abs=1e-4)


def _aug_pe_classic(adjacency: str, rounds: int = 4):
    from wasp_jax import config as C

    cfg = with_method(C.base_config(), "aug_pe")
    return C.replace(
        cfg,
        **{
            "data.private_path": "private.jsonl",  # not read: the plan needs only its shape
            "generation.rounds": rounds,
            "privacy.accounting": "classic",
            "privacy.adjacency": adjacency,
        },
    )


def test_classic_ledger_states_the_epsilon_of_the_derived_sensitivity():
    """Classic accounting calibrates sigma with the original's Delta, but the ledger accounts
    each release with the derived L2 sensitivity. Aug-PE (Q = 1, one histogram) under
    replace-one has Delta = 1 but L2 = sqrt(2): sigma = 2.4224 over T = 4 rounds at a target
    of 4 is really epsilon 5.24 (PLD; 5.66 by the ledger's RDP accountant), not the 3.51 that
    Delta gives."""
    from wasp_jax.errors import ConfigError
    from wasp_jax.pipeline.methods import privacy_plan
    from wasp_jax.privacy.ledger import RunLedger
    from wasp_jax.privacy.plan import PrivacyPlan

    sigma = privacy.calibrate_sigma(
        4.0, 1e-5, num_rounds=4, l2_sensitivity=1.0, accountant="classic"
    )
    l2 = privacy.l2_sensitivity(1, num_histograms=1, adjacency="replace_one")
    assert l2 == pytest.approx(math.sqrt(2))
    true_pld = accounting.epsilon_of([sigma / l2] * 4, 1e-5, accountant="pld")
    stated_pld = accounting.epsilon_of([sigma / 1.0] * 4, 1e-5, accountant="pld")
    assert true_pld == pytest.approx(5.24, abs=0.01) and stated_pld == pytest.approx(3.51, abs=0.01)
    true_rdp = accounting.epsilon_of([sigma / l2] * 4, 1e-5, accountant="rdp")
    # the plan refuses such a config before any release, naming the true figure and the fix
    with pytest.raises(ConfigError, match="privacy.accounting='rdp'") as err:
        privacy_plan(_aug_pe_classic("replace_one"))
    assert f"{true_rdp:.4g}" in str(err.value) and "> the target 4" in str(err.value)
    # a ledger given that calibration states the true epsilon, and refuses the round beyond it
    plan = PrivacyPlan(
        epsilon=4.0, delta=1e-5, adjacency="replace_one", accounting="classic",
        sensitivity=1.0, l2_sensitivity=l2, sigma=sigma, rounds=4, num_parties=1,
        releases=("nearest",), noise="secure",
    )  # fmt: skip
    ledger = RunLedger.new(
        plan, method="aug_pe", adjacency="replace_one", num_parties=1, num_histograms=1
    )
    spent = []
    with pytest.raises(PrivacyBudgetExceededError, match="budget 4") as err:
        for t in range(4):
            ledger.record(t)
            spent.append(ledger.epsilon_spent)
    done = len(spent)
    assert 1 <= done < 4
    want = [
        accounting.epsilon_of([sigma / l2] * (t + 1), 1e-5, accountant="rdp") for t in range(done)
    ]
    np.testing.assert_allclose(spent, want, rtol=1e-12)
    over = accounting.epsilon_of([sigma / l2] * (done + 1), 1e-5, accountant="rdp")
    assert f"{over:.6g}" in str(err.value)
    report = ledger.report()
    assert report["sensitivity"] == l2 and report["calibration_sensitivity"] == 1.0
    assert all(r["sensitivity"] == l2 for r in report["releases"])
    assert "epsilon_spent_l2" not in report


def test_classic_defaults_are_refused_only_when_the_derived_epsilon_is_over_target():
    from wasp_jax import config as C
    from wasp_jax.pipeline.methods import privacy_plan
    from wasp_jax.privacy.ledger import RunLedger

    add = privacy_plan(_aug_pe_classic("add_remove"))  # Delta = L2 = 1: epsilon 3.80 (RDP)
    assert add.sensitivity == add.l2_sensitivity == 1.0
    cfg = C.replace(C.base_config(), **{"privacy.accounting": "classic", "generation.rounds": 4})
    plan = privacy_plan(cfg)  # the paper's sigma: Delta = 4 >= L2 = 1.633
    assert plan.sigma == pytest.approx(9.6896, abs=1e-4) and plan.sensitivity == 4.0
    ledger = RunLedger.new(plan, method="wasp", adjacency="add_remove", num_parties=1,
                           num_histograms=2)  # fmt: skip
    for t in range(4):
        ledger.record(t)
    want = accounting.epsilon_of([plan.sigma / plan.l2_sensitivity] * 4, 1e-5, accountant="rdp")
    assert ledger.epsilon_spent == pytest.approx(want, rel=1e-12)
    assert ledger.epsilon_spent == pytest.approx(1.404, abs=1e-3)  # far below the stated 4
    again = RunLedger.from_state(ledger.to_state())
    assert again.epsilon_spent == ledger.epsilon_spent and again.releases == ledger.releases

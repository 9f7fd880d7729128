"""WASP+'s aggregated releases: sensitivity by brute force, the split accountant, the boundary."""

import ast
import dataclasses
import math
import pathlib

import chex
import dp_accounting
import jax
import numpy as np
import pytest
from dp_accounting.pld import pld_privacy_accountant
from dp_accounting.rdp import rdp_privacy_accountant
from wasp_jax.kernels import releases, voting

from tests.kernels._reference import reference_votes, unit_rows
from wasp_jax.pipeline.stages import vote_plus
from wasp_jax.privacy.composition import calibrate_split
from wasp_jax.privacy.noise_source import NoiseSource
from wasp_jax.privacy.release_kinds import kind_sensitivity

#: The vote and probe kinds, tested together (class_prototypes: tests/pipeline/test_wasp_proto.py).
KINDS = ("per_sample", "per_plm", "per_cluster", "usefulness")

REPO = pathlib.Path(__file__).resolve().parents[1]
KEY = NoiseSource.seeded(7)
ALL = {k: 0.0 for k in KINDS}


def _case(seed, n_priv=12, n_syn=48, d=6, num_classes=2, num_plms=3, n_clusters=4):
    rng = np.random.default_rng(seed)
    e_priv = unit_rows(rng, n_priv + 1, d)  # the extra row is the replacement record
    y_priv = rng.integers(0, num_classes, n_priv + 1).astype(np.int32)
    e_syn = unit_rows(rng, n_syn, d)
    y_syn = (np.arange(n_syn) % num_classes).astype(np.int32)
    plm = rng.integers(0, num_plms, n_syn).astype(np.int32)
    cluster = rng.integers(0, n_clusters, n_syn).astype(np.int32)
    probes = (
        rng.standard_normal((num_plms, d, num_classes)).astype(np.float32),
        rng.standard_normal((num_plms, num_classes)).astype(np.float32),
    )
    return e_priv, y_priv, e_syn, y_syn, plm, cluster, probes


def _release(case, mask, q, release=("nearest", "farthest"), num_clusters=4):
    e_priv, y_priv, e_syn, y_syn, plm, cluster, probes = case
    out = vote_plus.aggregate_and_noise(
        KEY, e_priv, y_priv, e_syn, y_syn, q=q, sigmas=ALL, release=release,
        priv_mask=mask, syn_plm=plm, num_plms=probes[0].shape[0], syn_cluster=cluster,
        num_clusters=num_clusters, probes=probes,
    )  # fmt: skip
    return {k: np.asarray(getattr(out, k), np.float64).ravel() for k in KINDS}


def _worst(case, q, n_priv):
    """Max L2 change of each kind over add/remove and replace-one neighbours of every row."""
    base_mask = np.arange(n_priv + 1) < n_priv
    base = _release(case, base_mask, q)
    worst_ar, worst_r = dict.fromkeys(KINDS, 0.0), dict.fromkeys(KINDS, 0.0)
    for i in range(n_priv):
        mask = base_mask.copy()
        mask[i] = False
        removed = _release(case, mask, q)
        mask[-1] = True
        replaced = _release(case, mask, q)
        for k in KINDS:
            worst_ar[k] = max(worst_ar[k], np.linalg.norm(removed[k] - base[k]))
            worst_r[k] = max(worst_r[k], np.linalg.norm(replaced[k] - base[k]))
    return worst_ar, worst_r


def _bounds(q, num_plms=3, adjacency="add_remove"):
    return {
        k: kind_sensitivity(k, q=q, num_histograms=2, num_plms=num_plms, adjacency=adjacency)
        for k in KINDS
    }


@pytest.mark.parametrize("q", [1, pytest.param(3, marks=pytest.mark.slow), 8])
def test_bruteforce_neighbours_never_exceed_each_kinds_sensitivity(q):
    for seed in range(3):
        case = _case(seed * 10 + q)
        worst_ar, worst_r = _worst(case, q, n_priv=12)
        ar, rep = _bounds(q), _bounds(q, adjacency="replace_one")
        for k in KINDS:
            assert worst_ar[k] <= ar[k] + 1e-5, (k, worst_ar[k], ar[k])
            assert worst_r[k] <= rep[k] + 1e-5, (k, worst_r[k], rep[k])


def test_bounds_are_reached_when_one_segment_takes_every_vote():
    """Every candidate of a class in one PLM and one cluster, every probe right: tight bounds."""
    q = 4
    e_priv, y_priv, e_syn, y_syn, _, _, (kern, _) = _case(5)
    plm = y_syn.copy()  # class c's candidates all come from PLM c
    cluster = y_syn.copy()
    biases = np.zeros((3, 2), np.float32)
    biases[:, 0] = 100.0  # every probe says class 0
    y_priv[:] = 0
    case = (e_priv, y_priv, e_syn, y_syn, plm, cluster, (np.zeros_like(kern), biases))
    worst_ar, _ = _worst(case, q, n_priv=12)
    ar = _bounds(q)
    for k in ("per_sample", "per_plm", "per_cluster", "usefulness"):
        assert worst_ar[k] == pytest.approx(ar[k], rel=1e-5), k


def test_sigma_zero_equals_the_clean_statistics():
    e_priv, y_priv, e_syn, y_syn, plm, cluster, probes = _case(1)
    out = _release((e_priv, y_priv, e_syn, y_syn, plm, cluster, probes), None, 4)
    near, far = reference_votes(e_priv, y_priv, e_syn, y_syn, 4)
    np.testing.assert_allclose(out["per_sample"], np.concatenate([near, far]), atol=1e-5)
    want_plm = np.concatenate([np.bincount(plm, near, 3), np.bincount(plm, far, 3)])
    np.testing.assert_allclose(out["per_plm"], want_plm, atol=1e-5)
    want_cl = np.concatenate([np.bincount(cluster, near, 4), np.bincount(cluster, far, 4)])
    np.testing.assert_allclose(out["per_cluster"], want_cl, atol=1e-5)
    pred = np.einsum("md,kdc->kmc", e_priv, probes[0]) + probes[1][:, None]
    np.testing.assert_allclose(out["usefulness"], (pred.argmax(-1) == y_priv).sum(1))


def test_kernels_with_and_without_jit():
    e_priv, y_priv, e_syn, y_syn, plm, cluster, (kern, bias) = _case(2)
    hist = np.random.default_rng(0).random(len(y_syn)).astype(np.float32)
    for fn, args, kw in [
        (releases.segment_totals, (hist, plm), {"num_segments": 3}),
        (releases.usefulness_counts, (e_priv, y_priv, kern, bias), {}),
        (releases.class_sums, (e_priv * 3.0, y_priv), {"num_classes": 2}),
    ]:
        eager = fn(*args, **kw)
        jitted = jax.jit(lambda *a, fn=fn, kw=kw: fn(*a, **kw))(*args)
        chex.assert_trees_all_close(eager, jitted, atol=1e-6)
    norms = np.linalg.norm(np.asarray(releases.clip_rows(e_priv * 3.0)), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-6)


@pytest.mark.slow
def test_noise_is_keyed_per_kind_and_has_sigma():
    e_priv, y_priv, e_syn, y_syn, plm, cluster, probes = _case(3, n_syn=4000)
    kw = dict(q=2, syn_plm=plm, num_plms=3, syn_cluster=cluster, num_clusters=4, probes=probes)
    clean = vote_plus.aggregate_and_noise(KEY, e_priv, y_priv, e_syn, y_syn, sigmas=ALL, **kw)
    sig = {k: 2.0 + i for i, k in enumerate(KINDS)}
    a = vote_plus.aggregate_and_noise(KEY, e_priv, y_priv, e_syn, y_syn, sigmas=sig, **kw)
    b = vote_plus.aggregate_and_noise(KEY, e_priv, y_priv, e_syn, y_syn, sigmas=sig, **kw)
    chex.assert_trees_all_equal(a, b)
    resid = np.asarray(a.per_sample - clean.per_sample).ravel()
    assert abs(resid.std() - sig["per_sample"]) < 0.1
    for k in KINDS:
        assert not np.allclose(getattr(a, k), getattr(clean, k)), k
    # one kind alone draws the same noise for it as all kinds together
    alone = vote_plus.aggregate_and_noise(
        KEY, e_priv, y_priv, e_syn, y_syn, sigmas={"usefulness": sig["usefulness"]}, **kw
    )
    np.testing.assert_allclose(alone.usefulness, a.usefulness, atol=1e-5)
    assert alone.per_sample is None
    # released values lie on each kind's lattice, a power of two dividing 2^-(q-1) or 1
    for k, step in a.steps.items():
        units = np.asarray(getattr(a, k), np.float64) / step
        np.testing.assert_array_equal(units, np.round(units))
        assert step <= (1.0 if k == "usefulness" else 0.5)
    assert not a.private and NoiseSource.fresh().private
    assert [row[0] for row in a.ledger] == list(KINDS)
    assert all(row[1] == sig[row[0]] and row[2] > 0 and row[3] for row in a.ledger)


def test_result_holds_only_post_noise_fields():
    fields = {f.name for f in dataclasses.fields(vote_plus.NoisyAggregates)}
    assert fields == {"released", "release", "ledger", "steps", "private"}
    e_priv, y_priv, e_syn, y_syn, plm, cluster, probes = _case(4)
    out = vote_plus.aggregate_and_noise(
        KEY, e_priv, y_priv, e_syn, y_syn, q=2, sigmas={"per_plm": 1.0}, syn_plm=plm, num_plms=3
    )
    assert set(out.released) == {"per_plm"}  # only what was asked for, each noised
    assert out.per_sample is None and out.per_plm is out.released["per_plm"]
    with pytest.raises(AttributeError, match="no_such_kind"):
        _ = out.no_such_kind


def test_refusals_name_the_problem():
    e_priv, y_priv, e_syn, y_syn, plm, cluster, probes = _case(4)
    call = lambda **kw: vote_plus.aggregate_and_noise(KEY, e_priv, y_priv, e_syn, y_syn, q=2, **kw)
    with pytest.raises(ValueError, match="release kinds"):
        call(sigmas={"bogus": 1.0})
    with pytest.raises(ValueError, match="syn_plm is required"):
        call(sigmas={"per_plm": 1.0}, num_plms=3)
    with pytest.raises(ValueError, match="syn_cluster values"):
        call(sigmas={"per_cluster": 1.0}, syn_cluster=cluster, num_clusters=2)
    with pytest.raises(ValueError, match="needs probes"):
        call(sigmas={"usefulness": 1.0})
    with pytest.raises(ValueError, match="recalibrate"):
        call(sigmas={"usefulness": 1.0}, probes=probes, sensitivities={"usefulness": 1.0})
    with pytest.raises(ValueError, match="sigmas"):
        call(sigmas={"per_plm": -1.0}, syn_plm=plm, num_plms=3)


def _dp_accounting_epsilon(zs, delta, method):
    acc = (
        pld_privacy_accountant.PLDAccountant()
        if method == "pld"
        else rdp_privacy_accountant.RdpAccountant()
    )
    event = dp_accounting.ComposedDpEvent([dp_accounting.GaussianDpEvent(z) for z in zs])
    return acc.compose(event).get_epsilon(delta)


@pytest.mark.slow
@pytest.mark.parametrize("accountant", ["pld", "rdp"])
@pytest.mark.parametrize("epsilon", [1.0, 4.0])
def test_split_composes_to_the_budget_under_dp_accounting(accountant, epsilon):
    counts = {"usefulness": 2, "per_cluster": 2, "per_plm": 1}
    fractions = {"usefulness": 0.5, "per_cluster": 0.3, "per_plm": 0.2}
    split = calibrate_split(
        epsilon, 1e-5, counts=counts, fractions=fractions, accountant=accountant
    )
    zs = split.all_multipliers()
    assert len(zs) == 5
    spent = _dp_accounting_epsilon(zs, 1e-5, accountant)
    assert spent <= epsilon
    assert spent >= 0.98 * epsilon
    # a kind with a larger share per release gets less noise
    per_release = {k: fractions[k] / counts[k] for k in counts}
    order = sorted(counts, key=lambda k: per_release[k])
    assert [split.multipliers[k] for k in order] == sorted(split.multipliers.values())[::-1]
    assert split.sigma("usefulness", math.sqrt(6)) == pytest.approx(
        split.multipliers["usefulness"] * math.sqrt(6)
    )


def test_split_validation_and_infinite_epsilon():
    ok = {"usefulness": 1}
    with pytest.raises(ValueError, match="sum to 1"):
        calibrate_split(4.0, 1e-5, counts=ok, fractions={"usefulness": 0.5})
    with pytest.raises(ValueError, match="unknown release kind"):
        calibrate_split(4.0, 1e-5, counts={"x": 1}, fractions={"x": 1.0})
    with pytest.raises(ValueError, match="same kinds"):
        calibrate_split(4.0, 1e-5, counts=ok, fractions={"per_plm": 1.0})
    inf = calibrate_split(math.inf, 1e-5, counts=ok, fractions={"usefulness": 1.0})
    assert inf.multipliers == {"usefulness": 0.0}


#: The only library modules that may call the kernels computing clean private statistics.
VOTE_PLACE = {
    "wasp_jax/pipeline/stages/vote.py",
    "wasp_jax/pipeline/stages/vote_plus.py",
    "wasp_jax/pipeline/stages/vote_baselines.py",
    # the kinds' statistics: traced only inside vote_plus's jitted function (checked below)
    "wasp_jax/privacy/release_kinds.py",
}
CLEAN_KERNELS = {
    "top_q_votes",
    "top_q_votes_parties",
    "top_q_candidates",
    "segment_totals",
    "usefulness_counts",
    "class_sums",
}


def test_no_pre_noise_value_leaves_the_vote_place():
    """Outside the vote place, nothing in the library or experiments calls a clean kernel."""
    files = [*(REPO / "wasp_jax").rglob("*.py"), *(REPO / "experiments").rglob("*.py")]
    offenders = []
    for path in files:
        rel = path.relative_to(REPO).as_posix()
        if rel in VOTE_PLACE:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "wasp_jax.kernels"
            ):
                offenders += [f"{rel}: {a.name}" for a in node.names if a.name in CLEAN_KERNELS]
            if isinstance(node, ast.Attribute) and node.attr in CLEAN_KERNELS:
                offenders.append(f"{rel}: .{node.attr}")
    # the voting benchmark times the kernel through the stage's re-export, on public data
    offenders = [o for o in offenders if not o.startswith("experiments/bench/voting.py")]
    assert offenders == []


def test_kind_statistics_are_called_only_by_the_vote_place():
    """The registry's statistic functions compute clean values: only vote_plus calls them."""
    callers = []
    for path in [*(REPO / "wasp_jax").rglob("*.py"), *(REPO / "experiments").rglob("*.py")]:
        rel = path.relative_to(REPO).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "statistic"
                and isinstance(node.func.value, ast.Subscript)  # KINDS[kind].statistic(...)
            ):
                callers.append(rel)
    assert set(callers) == {"wasp_jax/pipeline/stages/vote_plus.py"}, callers


def test_clean_kernel_outputs_are_not_returned_with_noise():
    """With sigma > 0, a released value equals its clean one only where the lattice noise drew
    0 (probability about 1 / (sqrt(2 pi) 64) per value at 64 lattice units of noise): at most
    one such value per kind here, where a release without noise would match everywhere."""
    case = _case(6)
    e_priv, y_priv, e_syn, y_syn, plm, cluster, probes = case
    clean = _release(case, None, 3)
    noisy = vote_plus.aggregate_and_noise(
        KEY, e_priv, y_priv, e_syn, y_syn, q=3, sigmas=dict.fromkeys(KINDS, 1.0),
        release=("nearest", "farthest"), syn_plm=plm, num_plms=3, syn_cluster=cluster,
        num_clusters=4, probes=probes,
    )  # fmt: skip
    for k in KINDS:
        same = np.isclose(np.asarray(getattr(noisy, k)).ravel(), clean[k], rtol=0, atol=1e-9)
        assert same.sum() <= max(1, 0.05 * same.size), (k, same.sum(), same.size)
    assert voting.vote_weights(3).sum() > 0

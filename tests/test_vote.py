"""The vote-and-noise boundary: equivalences, sharding, parties, segments, validation."""

import chex
import jax
import numpy as np
import pytest

from tests.kernels._reference import reference_votes, unit_rows
from wasp_jax import privacy
from wasp_jax.models.sharding import make_mesh
from wasp_jax.pipeline.stages import vote
from wasp_jax.privacy.noise_source import NoiseSource


def _case(seed=0, n_priv=40, n_syn=300, num_classes=3, d=8):
    rng = np.random.default_rng(seed)
    return (
        unit_rows(rng, n_priv, d),
        rng.integers(0, num_classes, n_priv),
        unit_rows(rng, n_syn, d),
        rng.integers(0, num_classes, n_syn),
    )


KEY = NoiseSource.seeded(42)


def test_sigma_zero_equals_reference_and_result_is_post_noise_only():
    case = _case()
    out = vote.vote_and_noise(KEY, *case, q=8, sigma=0.0)
    want = reference_votes(*case, q=8)
    np.testing.assert_allclose(out.nearest, want[0], atol=1e-5)
    np.testing.assert_allclose(out.farthest, want[1], atol=1e-5)
    assert out.l2_sensitivity == pytest.approx(privacy.l2_sensitivity(8))
    fields = {f.name for f in __import__("dataclasses").fields(out)}
    assert fields == {
        "nearest", "farthest", "sigma", "l2_sensitivity", "release", "adjacency",
        "lattice_step", "private",
    }  # fmt: skip
    assert out.lattice_step is None and out.private is False


def test_noise_is_keyed_and_has_sigma():
    case = _case(1, n_syn=4000)
    clean = vote.vote_and_noise(KEY, *case, q=4, sigma=0.0)
    a = vote.vote_and_noise(KEY, *case, q=4, sigma=2.0)
    b = vote.vote_and_noise(KEY, *case, q=4, sigma=2.0)
    c = vote.vote_and_noise(NoiseSource.seeded(7), *case, q=4, sigma=2.0)
    d = vote.vote_and_noise(NoiseSource.fresh(), *case, q=4, sigma=2.0)
    np.testing.assert_array_equal(a.nearest, b.nearest)
    assert not np.allclose(a.nearest, c.nearest)
    assert d.private and not a.private
    # every released value is an integer multiple of the lattice step 2^-k <= 2^-(q-1)
    assert a.lattice_step <= 2.0**-3 and a.lattice_step * 64 <= 2.0
    units = np.asarray(a.nearest, np.float64) / a.lattice_step
    np.testing.assert_array_equal(units, np.round(units))
    z = np.concatenate([a.nearest - clean.nearest, a.farthest - clean.farthest])
    assert abs(z.std() - 2.0) < 5 * 2.0 / np.sqrt(2 * z.size)
    assert abs(np.corrcoef(a.nearest - clean.nearest, a.farthest - clean.farthest)[0, 1]) < 0.1
    only_far = vote.vote_and_noise(KEY, *case, q=4, sigma=2.0, release="farthest")
    assert only_far.nearest is None
    np.testing.assert_array_equal(only_far.farthest, a.farthest)
    assert only_far.l2_sensitivity == pytest.approx(privacy.l2_sensitivity(4, num_histograms=1))


def test_blocked_equals_unblocked():
    case = _case(2, n_priv=30, n_syn=2500)
    full = vote.vote_and_noise(KEY, *case, q=8, sigma=1.0)
    blocked = vote.vote_and_noise(KEY, *case, q=8, sigma=1.0, block_size=512)
    np.testing.assert_array_equal(blocked.nearest, full.nearest)
    np.testing.assert_array_equal(blocked.farthest, full.farthest)


def test_sharded_over_8_device_mesh_equals_single_device():
    assert jax.device_count() >= 8, "tests/conftest.py forces 8 CPU devices"
    case = _case(3, n_syn=1000)
    single = vote.vote_and_noise(KEY, *case, q=8, sigma=1.5)
    mesh = make_mesh(data=8)
    sharded = vote.vote_and_noise(KEY, *case, q=8, sigma=1.5, mesh=mesh)
    np.testing.assert_allclose(sharded.nearest, single.nearest, atol=1e-6)
    np.testing.assert_allclose(sharded.farthest, single.farthest, atol=1e-6)
    blocked = vote.vote_and_noise(KEY, *case, q=8, sigma=1.5, mesh=mesh, block_size=256)
    np.testing.assert_allclose(blocked.nearest, single.nearest, atol=1e-6)


def test_parties_sum_votes_and_noise_with_sigma_over_sqrt_l():
    case = _case(4, n_priv=45, n_syn=3000)
    party = np.arange(45) % 3
    clean = vote.vote_and_noise(KEY, *case, q=4, sigma=0.0, party_id=party, num_parties=3)
    single = vote.vote_and_noise(KEY, *case, q=4, sigma=0.0)
    np.testing.assert_allclose(clean.nearest, single.nearest, atol=1e-5)
    noisy = vote.vote_and_noise(KEY, *case, q=4, sigma=3.0, party_id=party, num_parties=3)
    z = np.asarray(noisy.nearest - clean.nearest)
    assert abs(z.std() - 3.0) < 5 * 3.0 / np.sqrt(2 * z.size)
    with pytest.raises(ValueError, match="party_id"):
        vote.vote_and_noise(KEY, *case, q=4, sigma=0.0, num_parties=3)
    with pytest.raises(ValueError, match="party_id"):
        vote.vote_and_noise(KEY, *case, q=4, sigma=0.0, party_id=party + 1, num_parties=3)


def test_release_sensitivity_by_brute_force_and_the_plan_check():
    case = _case(5)
    out = vote.vote_and_noise(KEY, *case, q=8, sigma=0.0)
    assert out.l2_sensitivity == pytest.approx(1.632981, abs=1e-6)  # recorded; reached below
    # Removing any one private record moves the release by <= its sensitivity, with equality
    # for a record whose class has >= q candidates.
    worst = 0.0
    base = np.concatenate([out.nearest, out.farthest])
    for i in range(len(case[0])):
        mask = np.arange(len(case[0])) != i
        nb = vote.vote_and_noise(KEY, *case, q=8, sigma=0.0, priv_mask=mask)
        worst = max(worst, np.linalg.norm(np.concatenate([nb.nearest, nb.farthest]) - base))
    assert worst == pytest.approx(out.l2_sensitivity, abs=1e-5)
    # the caller's plan must have been calibrated for what is released
    ok = vote.vote_and_noise(KEY, *case, q=8, sigma=0.0, l2_sensitivity=out.l2_sensitivity)
    np.testing.assert_array_equal(ok.nearest, out.nearest)
    with pytest.raises(ValueError, match="sensitivity"):
        vote.vote_and_noise(KEY, *case, q=8, sigma=0.0, l2_sensitivity=out.l2_sensitivity / 2)
    with pytest.raises(ValueError, match="sensitivity"):
        near_only = vote.release_sensitivity(8, release=("nearest",))
        vote.vote_and_noise(KEY, *case, q=8, sigma=0.0, l2_sensitivity=near_only)


def test_compiled_once_across_populations_in_one_bucket(monkeypatch):
    chex.clear_trace_counter()
    monkeypatch.setattr(vote, "_core", chex.assert_max_traces(vote._core, n=1))
    vote._jitted.cache_clear()
    try:
        for n_syn in (37, 50, 63):
            case = _case(6, n_priv=20, n_syn=n_syn)
            out = vote.vote_and_noise(KEY, *case, q=4, sigma=0.0)
            assert out.nearest.shape == (n_syn,)
            np.testing.assert_allclose(out.nearest, reference_votes(*case, q=4)[0], atol=1e-5)
    finally:
        vote._jitted.cache_clear()


def test_empty_private_set_releases_pure_noise():
    _, _, syn, syn_label = _case(7)
    out = vote.vote_and_noise(
        KEY, np.zeros((0, 8), np.float32), np.zeros(0, int), syn, syn_label, q=8, sigma=1.0
    )
    assert out.nearest.shape == (300,)
    assert 0.8 < float(np.std(out.nearest)) < 1.2


@pytest.mark.parametrize(
    "change,match",
    [
        (dict(priv_emb=lambda c: c[0] * 2.0), "unit-norm"),
        (dict(syn_emb=lambda c: c[2][:, :4]), "same d"),
        (dict(priv_label=lambda c: c[1][:-1]), "priv_label"),
        (dict(syn_label=lambda c: c[3].astype(float)), "syn_label"),
        (dict(syn_emb=lambda c: np.where(np.arange(len(c[2]))[:, None] == 3, np.nan, c[2])), "NaN"),
    ],
)
def test_boundary_validation(change, match):
    case = list(_case(8))
    names = ["priv_emb", "priv_label", "syn_emb", "syn_label"]
    for name, fn in change.items():
        case[names.index(name)] = fn(case)
    with pytest.raises(ValueError, match=match):
        vote.vote_and_noise(KEY, *case, q=8, sigma=1.0)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(q=0), "q must"),
        (dict(sigma=-1.0), "sigma"),
        (dict(sigma=float("nan")), "sigma"),
        (dict(release=("nearest", "middle")), "release"),
        (dict(release=()), "release"),
        (dict(adjacency="swap"), "adjacency"),
        (dict(block_size=0), "block_size"),
    ],
)
def test_option_validation(kwargs, match):
    args = dict(q=8, sigma=1.0) | kwargs
    with pytest.raises(ValueError, match=match):
        vote.vote_and_noise(KEY, *_case(9, n_syn=50), **args)

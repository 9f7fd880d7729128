"""The run's noise source: secret-keyed, independent per label, never the seed's."""

import numpy as np
import pytest

from tests.kernels._reference import unit_rows
from wasp_jax.pipeline.stages.vote import vote_and_noise
from wasp_jax.privacy.noise_source import NoiseSource


def test_words_are_stable_per_label_and_independent_across_labels():
    src = NoiseSource.fresh()
    a = src.child("r1", "nearest").words((1000,))
    assert a.shape == (1000, 4) and a.dtype == np.uint32
    np.testing.assert_array_equal(a, src.child("r1", "nearest").words((1000,)))
    for other in (src.child("r1", "farthest"), src.child("r2", "nearest"), src.child("r1nearest")):
        assert (other.words((1000,)) != a).mean() > 0.99
    # a longer request extends the same stream
    np.testing.assert_array_equal(src.child("r1", "nearest").words((2000,))[:1000], a)


def test_two_runs_with_one_seed_draw_different_noise():
    a = NoiseSource.fresh().child("r1").lattice_noise((5000,), scale=100.0)
    b = NoiseSource.fresh().child("r1").lattice_noise((5000,), scale=100.0)
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.05
    s1 = NoiseSource.seeded(0).child("r1").lattice_noise((5000,), scale=100.0)
    s2 = NoiseSource.seeded(0).child("r1").lattice_noise((5000,), scale=100.0)
    np.testing.assert_array_equal(s1, s2)  # seeded: reproducible, hence not private


@pytest.mark.slow
def test_the_seed_attack_recovers_nothing_from_a_secure_release():
    # An attacker who knows the seed regenerates the noise the seeded mode would draw and
    # subtracts it from a secure release: the guess is uncorrelated with the real noise.
    rng = np.random.default_rng(0)
    priv, syn = unit_rows(rng, 50, 8), unit_rows(rng, 10_000, 8)
    args = (priv, rng.integers(0, 2, 50), syn, rng.integers(0, 2, 10_000))
    clean = vote_and_noise(NoiseSource.seeded(0), *args, q=8, sigma=0.0)
    real = vote_and_noise(NoiseSource.fresh().child("r1"), *args, q=8, sigma=3.0)
    guess = vote_and_noise(NoiseSource.seeded(0).child("r1"), *args, q=8, sigma=3.0)
    real_noise = np.asarray(real.nearest) - np.asarray(clean.nearest)
    guessed_noise = np.asarray(guess.nearest) - np.asarray(clean.nearest)
    r = np.corrcoef(real_noise, guessed_noise)[0, 1]
    assert abs(r) < 4 / np.sqrt(real_noise.size)
    recovered = np.asarray(real.nearest) - guessed_noise
    assert (recovered - np.asarray(clean.nearest)).std() > 3.0 * 1.3  # the noise grew, not gone
    assert real.private and not guess.private


def test_party_noise_sums_to_the_aggregate_scale():
    x = NoiseSource.fresh().lattice_noise((40_000,), scale=64.0, parties=4)
    assert abs(x.std() / 128.0 - 1) < 5 * np.sqrt(0.5 / x.size)


def test_secrets_are_checked_and_never_shown():
    secret = bytes(range(32))
    src = NoiseSource.secure(secret)
    assert src.private and secret.hex() not in repr(src) and "secret" not in repr(src.child("a"))
    with pytest.raises(ValueError, match="16 bytes"):
        NoiseSource.secure(b"short")
    with pytest.raises(ValueError, match="integer"):
        NoiseSource.seeded("0")
    assert not NoiseSource.seeded(0).private

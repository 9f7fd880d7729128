"""The vote stage's aggregated releases (WASP+): private embeddings in, noisy small vectors out.

Part of the one vote-and-noise place (with ``wasp_jax.pipeline.stages.vote``):
``aggregate_and_noise``
computes, inside one jitted function, the clean statistics of the requested release kinds
(``wasp_jax.privacy.release_kinds.KINDS``) and returns only their noised values:

* ``per_sample``: the Top-Q histograms over every candidate, as ``vote_and_noise`` releases;
* ``per_plm``: those votes summed per PLM, one K-vector per histogram;
* ``per_cluster``: summed per cluster of candidates (a public clustering of synthetic data);
* ``usefulness``: per PLM, the number of private records the linear probe fitted on that PLM's
  synthetic rows classifies correctly.

Each kind is noised with its own sigma (a ``BudgetSplit`` of the run's budget): its clean
values, multiples of 2^-(q-1) (votes) or integers (counts), move to a power-of-two lattice and
get discrete Gaussian noise read from the kind's own child of the run's noise source
(``kernels.noise``, docs/method.md §2.5). Each sigma is checked against the sensitivity
derived for what is released. Clean values never leave the jitted function.

Example::

    out = aggregate_and_noise(noise, e_priv, y_priv, e_syn, y_syn, q=8,
                              sigmas={"per_cluster": 4.1, "usefulness": 6.0},
                              syn_cluster=cluster_id, num_clusters=32, probes=(W, b))
    out.per_cluster          # (1, 32) noisy cluster totals of the nearest votes
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from wasp_jax.kernels.noise import lattice_step
from wasp_jax.kernels.voting import top_q_votes
from wasp_jax.pipeline.stages.vote_inputs import pad_synthetic, release_histograms, vote_arrays
from wasp_jax.privacy.noise_source import NoiseSource
from wasp_jax.privacy.release_kinds import KINDS, Dims, Statistic, kind_sensitivity


@flax.struct.dataclass
class NoisyAggregates:
    """Post-noise releases of one call. Holds nothing computed before the noise.

    A released kind reads as an attribute (``out.per_cluster``); a kind that was not
    requested reads as None.

    Attributes:
      released: {kind: noisy array}, e.g. per_sample (H, n_syn), per_plm (H, K), per_cluster
        (H, n_clusters), usefulness (K,) (H = len(release)).
      release: the histograms the vote kinds count ("nearest", "farthest").
      ledger: ((kind, sigma, sensitivity, what it measures), ...) of every release made.
      steps: {kind: lattice step}; each released value is a multiple of its kind's step.
      private: False when the noise came from a seeded (not DP) source.
    """

    released: dict = flax.struct.field(default_factory=dict)
    release: tuple[str, ...] = flax.struct.field(pytree_node=False, default=())
    ledger: tuple[tuple[str, float, float, str], ...] = flax.struct.field(
        pytree_node=False, default=()
    )
    steps: dict[str, float] = flax.struct.field(pytree_node=False, default_factory=dict)
    private: bool = flax.struct.field(pytree_node=False, default=True)

    def __getattr__(self, name: str):
        if name in KINDS:
            return self.__dict__.get("released", {}).get(name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


def _release(units, noise, step):
    """Noisy lattice units back to release units (float32 multiples of ``step``)."""
    return (units + noise).astype(jnp.float32) * step


def _core(noise, pe, pl, pm, se, sl, sm, plm, cluster, kernels, biases, *, static):
    """Clean statistics of the requested kinds -> lattice units + noise, noisy values out.

    ``noise``: {kind: int32 noise in that kind's lattice units}; ``steps`` (static): {kind:
    lattice step}. Votes are multiples of 2^-(q-1) and counts are integers, multiples of
    every step chosen for them, so the conversion to units is exact.
    """
    kinds, release, dims, steps = static
    steps = dict(steps)
    votes = None
    if any(KINDS[k].counts_votes for k in kinds):
        near, far = top_q_votes(pe, pl, se, sl, q=dims.q, priv_mask=pm, syn_mask=sm)
        votes = tuple({"nearest": near, "farthest": far}[name] for name in release)
        del near, far
    stat = Statistic(votes, sm, sl, plm, cluster, pe, pl, pm, (kernels, biases), dims)
    out = {}
    for kind in kinds:
        units = KINDS[kind].statistic(stat, steps[kind])
        out[kind] = _release(units, noise[kind], steps[kind])
        del units
    del votes, stat
    return out


@functools.lru_cache(maxsize=64)
def _jitted(static):
    return jax.jit(functools.partial(_core, static=static))


def release_sensitivities(
    kinds, *, q: int, release, num_plms: int, adjacency: str = "add_remove"
) -> dict[str, float]:
    """{kind: L2 sensitivity} of what ``aggregate_and_noise`` releases for each kind."""
    release = release_histograms(release)
    return {
        k: kind_sensitivity(
            k, q=q, num_histograms=len(release), num_plms=num_plms, adjacency=adjacency
        )
        for k in kinds
    }


def aggregate_and_noise(
    noise: NoiseSource,
    priv_emb,
    priv_label,
    syn_emb,
    syn_label,
    *,
    q: int,
    sigmas: Mapping[str, float],
    release=("nearest",),
    adjacency: str = "add_remove",
    sensitivities: Mapping[str, float] | None = None,
    priv_mask=None,
    syn_mask=None,
    syn_plm=None,
    num_plms: int = 1,
    syn_cluster=None,
    num_clusters: int = 1,
    probes: tuple[np.ndarray, np.ndarray] | None = None,
    num_classes: int | None = None,
    norm_tol: float = 1e-3,
) -> NoisyAggregates:
    """The requested aggregated releases of the private set, noised.

    Long because its docstring documents each input a kind may need; the body is short.

    Args:
      noise: the round's noise source; each kind reads its own child (``noise.child(kind)``).
      priv_emb, priv_label: (M, d) unit-norm private embeddings and (M,) int labels.
      syn_emb, syn_label: (n, d) unit-norm synthetic embeddings and (n,) int labels.
      q: votes per private record and histogram.
      sigmas: {kind: noise std} for each kind to release (keys from ``KINDS``).
      release: histograms the vote kinds count ("nearest", "farthest").
      adjacency: neighbouring relation of the sensitivities.
      sensitivities: {kind: sensitivity the caller calibrated for}; each must equal the
        derived one, or the release is refused.
      priv_mask: (M,) bool, private rows that take part (default all).
      syn_mask: (n,) bool, candidates that receive votes.
      syn_plm, num_plms: (n,) PLM of each candidate and K (per_plm; K also for usefulness).
      syn_cluster, num_clusters: (n,) cluster of each candidate and their number (per_cluster).
      probes: (kernels (K, d, C), biases (K, C)) of the per-PLM linear probes (usefulness).
      num_classes: C, the rows of the class-prototype release (a kind that needs "classes").

    Raises:
      ValueError: an unknown kind, a missing input of a requested kind, a negative sigma or a
        sensitivity that is not the release's.
    """
    kinds, release, derived, num_plms = _check_request(
        sigmas,
        sensitivities,
        q=q,
        release=release,
        adjacency=adjacency,
        num_plms=num_plms,
        probes=probes,
    )
    rows = (priv_emb, priv_label, syn_emb, syn_label, priv_mask, syn_mask, None)
    checked = vote_arrays(rows, sigma=0.0, num_parties=1, block_size=None, norm_tol=norm_tol)
    priv_label, syn_label, priv_mask, syn_mask, _ = checked
    n = syn_emb.shape[0]
    needs = {need for k in kinds for need in KINDS[k].needs}
    plm = _ids("syn_plm", syn_plm, n, num_plms, "plm" in needs)
    cluster = _ids("syn_cluster", syn_cluster, n, num_clusters, "cluster" in needs)
    if "probes" in needs and probes is None:
        raise ValueError(f"the release of {sorted(kinds)} needs probes=(kernels, biases)")
    if "classes" in needs and (num_classes is None or int(num_classes) < 1):
        raise ValueError(f"the release of {sorted(kinds)} needs num_classes >= 1")
    if "classes" in needs and priv_label.size and int(priv_label.max()) >= int(num_classes):
        raise ValueError(f"private labels must be in [0, {num_classes})")
    d = syn_emb.shape[1]
    kernels, biases = probes if probes is not None else (np.zeros((1, d, 1)), np.zeros((1, 1)))
    se, sl, sm = pad_synthetic(np.asarray(syn_emb, np.float32), syn_label, syn_mask, multiple=1)
    pad = se.shape[0] - n
    plm, cluster = np.pad(plm, (0, pad)), np.pad(cluster, (0, pad))
    dims = Dims(
        q=int(q),
        num_histograms=len(release),
        n=n,
        num_plms=int(num_plms),
        num_clusters=int(num_clusters),
        adjacency=adjacency,
        num_classes=int(num_classes or 1),
        dim=int(syn_emb.shape[1]),
    )
    steps, noise_units = _noise_units(noise, kinds, sigmas, dims, n_padded=n + pad)
    static = (kinds, release, dataclasses.replace(dims, n=n + pad), tuple(steps.items()))
    out = _jitted(static)(
        noise_units,
        np.asarray(priv_emb, np.float32),
        priv_label.astype(np.int32),
        priv_mask,
        se,
        sl,
        sm,
        plm,
        cluster,
        np.asarray(kernels, np.float32),
        np.asarray(biases, np.float32),
    )
    del priv_emb, priv_label, priv_mask
    out = {k: v[tuple(slice(0, m) for m in KINDS[k].shape(dims))] for k, v in out.items()}
    ledger = tuple((k, float(sigmas[k]), derived[k], KINDS[k].measures) for k in kinds)
    return NoisyAggregates(
        released=out, release=release, ledger=ledger, steps=steps, private=noise.private
    )


def _check_request(sigmas, sensitivities, *, q, release, adjacency, num_plms, probes):
    """The requested kinds in registry order, the histograms, the derived sensitivities and
    K; refuses unknown kinds, bad sigmas and a calibration for another sensitivity."""
    kinds = tuple(k for k in KINDS if k in sigmas)
    unknown = set(sigmas) - set(KINDS)
    if unknown or not kinds:
        raise ValueError(
            f"sigmas must name release kinds from {tuple(KINDS)}, got {sorted(sigmas)}"
        )
    release = release_histograms(release)
    if probes is not None and any("probes" in KINDS[k].needs for k in kinds):
        num_plms = int(np.asarray(probes[0]).shape[0])
    derived = release_sensitivities(
        kinds, q=q, release=release, num_plms=num_plms, adjacency=adjacency
    )
    for k in kinds:
        s = float(sigmas[k])
        if not np.isfinite(s) or s < 0:
            raise ValueError(f"sigmas[{k!r}] must be a finite number >= 0, got {s!r}")
        if sensitivities is not None and not np.isclose(sensitivities[k], derived[k], rtol=1e-9):
            raise ValueError(
                f"the plan's sensitivity {sensitivities[k]!r} for {k!r} is not that of this "
                f"release ({derived[k]!r}); recalibrate sigma for what is released"
            )
    return kinds, release, derived, num_plms


def _noise_units(noise, kinds, sigmas, dims: Dims, *, n_padded: int):
    """{kind: lattice step} and {kind: int32 noise in lattice units}, padded like the
    candidates (the padding is sliced off the release)."""
    steps, units_of = {}, {}
    padded = dataclasses.replace(dims, n=n_padded)
    for k in kinds:
        kind, sigma = KINDS[k], float(sigmas[k])
        shape = kind.shape(dims)
        if sigma == 0:  # epsilon = inf: the clean values, not private
            steps[k], units = kind.natural_step(dims.q), np.zeros(shape, np.int32)
        else:
            steps[k] = lattice_step(sigma, kind.natural_step(dims.q))
            units = noise.child(k).lattice_noise(shape, scale=sigma / steps[k])
        widths = [(0, full - m) for m, full in zip(shape, kind.shape(padded), strict=True)]
        units_of[k] = np.pad(units, widths)
    return steps, units_of


def _ids(name, ids, n, num, needed) -> np.ndarray:
    if not needed:
        return np.zeros(n, np.int32)
    if ids is None:
        raise ValueError(f"{name} is required for the release that sums by it")
    ids = np.asarray(ids)
    if ids.shape != (n,) or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{name} must be a ({n},) integer array, got {ids.dtype} {ids.shape}")
    if n and (ids.min() < 0 or ids.max() >= num):
        raise ValueError(f"{name} values must be in [0, {num})")
    return ids.astype(np.int32)

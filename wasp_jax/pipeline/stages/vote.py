"""The one vote-and-noise stage: private embeddings in, noisy vote histograms out.

``vote_and_noise`` is the only place where private data meet the synthetic population. It
validates its inputs, pads them to shape buckets (jit compiles once per bucket), computes the
clean Top-Q nearest/farthest histograms inside each class (``kernels.voting``), moves them to
their integer lattice (multiples of a power-of-two step dividing 2^-(Q-1)), adds discrete
Gaussian noise drawn from the run's secret (``kernels.noise``, per party sigma/sqrt(L),
summed) and returns only post-noise arrays in a ``NoisyVotes`` pytree (docs/method.md §2.4,
§2.5, §6.6). Clean values never leave the jitted function; the noise enters it as integers
drawn beforehand from secret words, independently of the data. The sensitivity of what it
releases is derived from the same vote weights (``wasp_jax.privacy.sensitivity``); a caller
passes its plan's value and the stage refuses to release if the two disagree.

``mesh`` splits the synthetic axis over all mesh axes with ``shard_map``: each device searches
its rows and only (n_priv, q) candidates are all-gathered; results equal the single-device ones.
A mesh that spans several processes (a multi-process run's global mesh) takes the same
host arrays on every process and returns the whole release to each of them.
``block_size`` streams the synthetic axis (memory O(n_priv * (q + block))).
``round_votes`` is the pipeline's call: one round's release, configured by the voting section
and the privacy plan.

Example::

    plan = wasp_jax.pipeline.methods.privacy_plan(cfg)
    votes = vote_and_noise(run_noise.child(f"r{t}"), e_priv, y_priv, e_syn, y_syn,
                           q=8, sigma=plan.sigma, l2_sensitivity=plan.l2_sensitivity)
    votes.nearest, votes.farthest                       # (n_syn,) float32 each, noisy
"""

import functools

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from wasp_jax.config import VotingConfig
from wasp_jax.kernels.noise import lattice_step
from wasp_jax.kernels.voting import (
    candidate_histogram,
    merge_candidates,
    top_q_candidates,
    top_q_votes,
    top_q_votes_parties,
)
from wasp_jax.pipeline.stages.vote_inputs import (
    HISTOGRAMS,
    group_parties,
    pad_synthetic,
    release_histograms,
    vote_arrays,
)
from wasp_jax.privacy.noise_source import NoiseSource
from wasp_jax.privacy.plan import PrivacyPlan
from wasp_jax.privacy.sensitivity import l2_sensitivity as _l2_sensitivity

# Re-exported so that experiments/ (benchmarks) reach the kernel through the pipeline.
__all__ = ["NoisyVotes", "release_sensitivity", "round_votes", "top_q_votes", "vote_and_noise"]


@flax.struct.dataclass
class NoisyVotes:
    """Post-noise release of one round. Holds nothing computed before the noise.

    Attributes:
      nearest: (n_syn,) float32 noisy nearest votes H~+, or None if not released.
      farthest: same for the farthest votes H~-.
      sigma: std of the noise on every released entry.
      l2_sensitivity: L2 sensitivity of the whole release (all released histograms).
      release: names of the released histograms.
      adjacency: neighbouring relation the sensitivity is computed for.
      lattice_step: the released values are multiples of it (None: no noise).
      private: False when the noise came from a seeded (not DP) source.
    """

    nearest: jax.Array | None
    farthest: jax.Array | None
    sigma: float = flax.struct.field(pytree_node=False)
    l2_sensitivity: float = flax.struct.field(pytree_node=False)
    release: tuple[str, ...] = flax.struct.field(pytree_node=False)
    adjacency: str = flax.struct.field(pytree_node=False)
    lattice_step: float | None = flax.struct.field(pytree_node=False, default=None)
    private: bool = flax.struct.field(pytree_node=False, default=True)

    def histograms(self) -> dict[str, jax.Array]:
        """{name: noisy histogram} of the released histograms, in release order."""
        return {name: getattr(self, name) for name in self.release}


def release_sensitivity(q: int, *, release=HISTOGRAMS, adjacency: str = "add_remove") -> float:
    """L2 sensitivity of what ``vote_and_noise`` releases with these options (calibrate with it)."""
    release = release_histograms(release)
    return _l2_sensitivity(q, num_histograms=len(release), adjacency=adjacency)


def _sharded_votes(
    priv_emb, priv_label, priv_mask, syn_emb, syn_label, syn_mask, *, q, block_size, mesh
):
    """Per-party clean histograms with the synthetic axis split over every axis of ``mesh``.

    Each device searches its own rows, the (n_priv, q) candidates of all devices are gathered
    and merged, and each device scatters the votes that land in its rows: only candidates
    cross devices, never the (n_priv, n_syn) similarities or the synthetic embeddings.
    """
    axes = tuple(mesh.axis_names)

    def local(pe, pl, pm, se, sl, sm):
        n_local = se.shape[0]
        offset = jax.lax.axis_index(axes) * n_local

        def per_party(emb, label, mask):
            found = top_q_candidates(emb, label, se, sl, q=q, syn_mask=sm, block_size=block_size)
            hists = []
            for vals, idx in found:
                vals = jax.lax.all_gather(vals, axes, axis=1, tiled=True)
                idx = jax.lax.all_gather(idx + offset, axes, axis=1, tiled=True)
                vals, idx = merge_candidates(vals, idx, q=q)
                hists.append(
                    candidate_histogram(vals, idx, n_syn=n_local, priv_mask=mask, offset=offset)
                )
            return tuple(hists)

        return jax.vmap(per_party)(pe, pl, pm)

    rows = PartitionSpec(axes)
    return jax.shard_map(
        local,
        mesh=mesh,
        in_specs=(PartitionSpec(), PartitionSpec(), PartitionSpec(), rows, rows, rows),
        out_specs=(PartitionSpec(None, axes), PartitionSpec(None, axes)),
        check_vma=False,
    )(priv_emb, priv_label, priv_mask, syn_emb, syn_label, syn_mask)


def _core(
    noise,
    priv_emb,
    priv_label,
    priv_mask,
    syn_emb,
    syn_label,
    syn_mask,
    *,
    q,
    release,
    block_size,
    mesh,
    step,
):
    """Clean votes -> lattice units + noise; returns only noisy arrays.

    ``noise``: one (n,) int32 array of summed party noise per released histogram, in units
    of the lattice ``step`` (None: epsilon = inf, no noise, the clean sums are returned).
    """
    if mesh is None:
        near, far = top_q_votes_parties(
            priv_emb,
            priv_label,
            syn_emb,
            syn_label,
            q=q,
            priv_mask=priv_mask,
            syn_mask=syn_mask,
            block_size=block_size,
        )
    else:
        near, far = _sharded_votes(
            priv_emb,
            priv_label,
            priv_mask,
            syn_emb,
            syn_label,
            syn_mask,
            q=q,
            block_size=block_size,
            mesh=mesh,
        )
    clean = {"nearest": near, "farthest": far}
    del near, far, priv_emb
    out = []
    for i, name in enumerate(release):
        hist = clean.pop(name).sum(axis=0)  # the parties' sums add up: noise below is summed
        if step is None:
            out.append(hist)
        else:
            # Votes are multiples of 2^-(q-1), a multiple of the step: exact in float32.
            units = jnp.round(hist * (1.0 / step)).astype(jnp.int32)
            out.append((units + noise[i]).astype(jnp.float32) * step)
        del hist
    return tuple(out)


@functools.lru_cache(maxsize=64)
def _jitted(q, release, block_size, mesh, step):
    fn = functools.partial(_core, q=q, release=release, block_size=block_size, mesh=mesh, step=step)
    if mesh is None:
        return jax.jit(fn)
    repl = NamedSharding(mesh, PartitionSpec())
    rows = NamedSharding(mesh, PartitionSpec(tuple(mesh.axis_names)))
    noise_shard = None if step is None else tuple(rows for _ in release)
    if mesh.is_multi_process:
        # Every process passes the same host arrays: the private ones enter replicated, each
        # device takes only its own synthetic rows (and noise) from its process's copy, and
        # the noisy histograms come back replicated to every process.
        jitted = jax.jit(
            fn,
            in_shardings=(noise_shard,) + (repl,) * 3 + (rows,) * 3,
            out_shardings=tuple(repl for _ in release),
        )
        put = lambda a: jax.make_array_from_callback(a.shape, rows, lambda i: a[i])

        def call(noise, pe, pl, pm, se, sl, sm):
            noise = None if noise is None else tuple(put(x) for x in noise)
            return jitted(noise, pe, pl, pm, put(se), put(sl), put(sm))

        return call
    return jax.jit(
        fn,
        in_shardings=(noise_shard, repl, repl, repl, rows, rows, rows),
        out_shardings=tuple(rows for _ in release),
    )


def vote_and_noise(
    noise: NoiseSource,
    priv_emb,
    priv_label,
    syn_emb,
    syn_label,
    *,
    q: int,
    sigma: float,
    release=HISTOGRAMS,
    adjacency: str = "add_remove",
    priv_mask=None,
    syn_mask=None,
    party_id=None,
    num_parties: int = 1,
    block_size: int | None = None,
    mesh: jax.sharding.Mesh | None = None,
    norm_tol: float = 1e-3,
    l2_sensitivity: float | None = None,
) -> NoisyVotes:
    """Top-Q votes of the private set on the synthetic set, noised for release.

    Long because its docstring documents each option of the release; the body is short.

    Args:
      noise: the release's noise source (e.g. ``run_noise.child("r3")``); each released
        histogram reads its own child (``"nearest"``, ``"farthest"``), each party its own.
      priv_emb: (n_priv, d) unit-norm private embeddings (NumPy or JAX).
      priv_label: (n_priv,) int private labels.
      syn_emb: (n_syn, d) unit-norm synthetic embeddings, n_syn >= 1.
      syn_label: (n_syn,) int synthetic labels.
      q: votes per private sample and histogram (Q), >= 1.
      sigma: std of the aggregate noise on every released entry, >= 0 (0: no noise).
      release: which histograms to release, a non-empty subset of ("nearest", "farthest").
      adjacency: "add_remove" or "replace_one", recorded with the sensitivity.
      priv_mask: (n_priv,) bool, rows that vote (default all).
      syn_mask: (n_syn,) bool, rows that may receive votes (default all).
      party_id: (n_priv,) int in [0, num_parties), the data party of each private row
        (required when num_parties > 1).
      num_parties: L; each party adds discrete Gaussian noise of std sigma / sqrt(L) to its
        histograms and the sums are released (assumes secure aggregation).
      block_size: stream the synthetic axis in blocks of this many rows (bounded memory).
      mesh: shard the synthetic axis over all axes of this mesh
        (``wasp_jax.models.sharding.make_mesh``).
      norm_tol: allowed | ||x|| - 1 | of unmasked embedding rows.
      l2_sensitivity: the sensitivity the caller calibrated sigma for (its privacy plan's);
        the release is refused unless it equals the sensitivity of what is released.

    Returns:
      NoisyVotes with (n_syn,) float32 noisy histograms, multiples of the lattice step.

    Raises:
      ValueError: bad shapes, dtypes, labels, norms or options (message names the field), or
        an ``l2_sensitivity`` that is not the release's.
    """
    release = release_histograms(release)
    sens = release_sensitivity(q, release=release, adjacency=adjacency)
    if l2_sensitivity is not None and not np.isclose(l2_sensitivity, sens, rtol=1e-9, atol=0):
        raise ValueError(
            f"the plan's L2 sensitivity {l2_sensitivity!r} is not that of this release "
            f"({sens!r} for q={q}, release={release}, adjacency={adjacency!r}); recalibrate "
            "sigma for what is released"
        )
    rows = (priv_emb, priv_label, syn_emb, syn_label, priv_mask, syn_mask, party_id)
    checked = vote_arrays(
        rows, sigma=sigma, num_parties=num_parties, block_size=block_size, norm_tol=norm_tol
    )
    priv_label, syn_label, priv_mask, syn_mask, party_id = checked
    n_syn = syn_emb.shape[0]
    step, noise_units = _party_noise(noise, release, n_syn, sigma, q, num_parties)

    # Pad to buckets so that jit compiles once per bucket, not once per population size.
    syn = pad_synthetic(syn_emb, syn_label, syn_mask, multiple=1 if mesh is None else mesh.size)
    priv = group_parties(priv_emb, priv_label.astype(np.int32), priv_mask, party_id, num_parties, 1)
    if noise_units is not None:
        pad = syn[0].shape[0] - n_syn
        noise_units = tuple(np.pad(x, (0, pad)) for x in noise_units)
    if block_size is not None and block_size >= syn[0].shape[0]:
        block_size = None
    fn = _jitted(int(q), release, block_size, mesh, step)
    noisy = fn(noise_units, *priv, *syn)
    del priv, priv_emb, priv_label, priv_mask
    if mesh is not None and mesh.is_multi_process:
        noisy = tuple(np.asarray(h) for h in noisy)  # replicated: whole on every process
    noisy = tuple(h[:n_syn] for h in noisy)
    by_name = dict(zip(release, noisy, strict=True))
    return NoisyVotes(
        nearest=by_name.get("nearest"),
        farthest=by_name.get("farthest"),
        sigma=float(sigma),
        l2_sensitivity=sens,
        release=release,
        adjacency=adjacency,
        lattice_step=step,
        private=noise.private,
    )


def _party_noise(noise, release, n_syn: int, sigma: float, q: int, num_parties: int):
    """The lattice step and every histogram's summed party noise in lattice units (None, None
    without noise). One step per release: a power of two dividing 2^-(q-1) (docs/method.md
    §2.5); each party adds sigma / sqrt(L)."""
    if not sigma > 0:
        return None, None
    party_sigma = float(sigma) / np.sqrt(num_parties)
    step = lattice_step(party_sigma, 2.0 ** -(int(q) - 1))
    units = [
        noise.child(name).lattice_noise((n_syn,), scale=party_sigma / step, parties=num_parties)
        for name in release
    ]
    return step, units


def round_votes(
    noise: NoiseSource,
    private: tuple[np.ndarray, np.ndarray, np.ndarray],
    syn_emb: np.ndarray,
    syn_label: np.ndarray,
    syn_mask: np.ndarray,
    *,
    voting: VotingConfig,
    plan: PrivacyPlan,
    mesh: jax.sharding.Mesh | None = None,
) -> NoisyVotes:
    """One round's release: Top-Q votes of the private set over the synthetic set, noised.

    Args:
      noise: this round's noise source (``run_noise.child(f"r{t}")``).
      private: (embeddings (M, d) unit-norm, labels (M,), party ids (M,)) of the private set.
      syn_emb: (n, d) unit-norm synthetic embeddings; syn_label: (n,) int.
      syn_mask: (n,) bool, False for samples held out this round (they get no votes).
      voting: q, the released histograms and the streaming block size.
      plan: the run's privacy plan (sigma, sensitivity, adjacency, number of parties).
      mesh: shard the synthetic axis over this mesh (None: one device).

    Returns:
      The post-noise `NoisyVotes` only.
    """
    priv_emb, priv_label, priv_party = private
    return vote_and_noise(
        noise,
        np.asarray(priv_emb, np.float32),
        np.asarray(priv_label, np.int32),
        np.asarray(syn_emb, np.float32),
        np.asarray(syn_label, np.int32),
        q=voting.q,
        sigma=plan.sigma,
        release=tuple(voting.release),
        adjacency=plan.adjacency,
        syn_mask=np.asarray(syn_mask, bool),
        party_id=np.asarray(priv_party, np.int32),
        num_parties=plan.num_parties,
        block_size=voting.block_size or None,
        mesh=mesh,
        l2_sensitivity=plan.l2_sensitivity,
    )

"""The registry of release kinds: what each sums, its shape, its L2 sensitivity and its lattice.

A release kind is data (`ReleaseKind`): the privacy plan reads its sensitivity, the vote place
(``wasp_jax.pipeline.stages.vote_plus``) computes its statistic inside one jitted function and
noises it with ``kernels.noise``, the ledger and the datasheet print what it measures. A method
names the kinds it releases (``Method.release_request``); a kind no method names is never
configured or released by a run. Adding a kind is one `register_kind` call
(docs/extending.md).

One private record contributes, under add/remove adjacency:

* ``per_sample``: its q distinct vote weights w (1, 1/2, ...) per histogram: ||w||_2 each
  (``sensitivity.l2_sensitivity``; the paper's release).
* ``per_plm`` / ``per_cluster``: the same weights summed per segment of candidates; all q may
  land in one segment, so sum(w) per histogram (the L1 norm bounds the L2 norm, with equality
  when one segment takes them all).
* ``usefulness``: a 0/1 K-vector (probe k right or wrong on this record): sqrt(K).
* ``class_prototypes``: its embedding, clipped and rounded to a grid so that its norm stays
  <= 1, added to its class's row of a (C, d) sum: 1.

Histograms add in quadrature. Under replace-one, a record's contribution is swapped for
another's: two non-negative vectors give ||u - v|| <= sqrt(2) max norm (vote kinds); two 0/1
vectors differ by at most 1 per entry, so usefulness stays sqrt(K); a class-prototype record
moves within its class (||u - v|| <= 2) or between two rows (sqrt(2)), so 2.
``tests/test_release_kinds.py`` checks each bound by brute force over neighbouring datasets.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from wasp_jax.config import ADJACENCIES
from wasp_jax.kernels.releases import clip_rows, usefulness_counts
from wasp_jax.kernels.voting import vote_weights
from wasp_jax.privacy.sensitivity import check_choice, check_int, l2_sensitivity


@dataclasses.dataclass(frozen=True)
class Dims:
    """The public sizes a release's shape and sensitivity depend on."""

    q: int = 1
    num_histograms: int = 1
    n: int = 1
    num_plms: int = 1
    num_clusters: int = 1
    adjacency: str = "add_remove"
    num_classes: int = 1
    dim: int = 1


@dataclasses.dataclass(frozen=True)
class Statistic:
    """What the vote place hands every kind's statistic, inside its jitted function.

    Attributes:
      votes: the clean Top-Q histograms, one (n,) array per released histogram (None when no
        requested kind counts votes).
      syn_mask: (n,) candidates that receive votes.
      syn_label: (n,) class of every candidate.
      plm, cluster: (n,) PLM and cluster of every candidate.
      priv_emb, priv_label, priv_mask: the private rows.
      probes: (kernels (K, d, C), biases (K, C)) of the per-PLM linear probes.
      dims: the public sizes.
    """

    votes: tuple | None
    syn_mask: jax.Array
    syn_label: jax.Array
    plm: jax.Array
    cluster: jax.Array
    priv_emb: jax.Array
    priv_label: jax.Array
    priv_mask: jax.Array
    probes: tuple
    dims: Dims


def to_units(x, step):
    """Clean values on the lattice ``step * Z`` as int32 units (exact: x is on it)."""
    return jnp.round(x * (1.0 / step)).astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class ReleaseKind:
    """One kind of release (all public; see the module docstring).

    Attributes:
      name: the key used in configs, the ledger and the checkpoint.
      measures: one sentence for the ledger and the datasheet.
      counts_votes: whether the statistic reads the Top-Q vote histograms.
      needs: inputs beyond the embeddings and labels ("plm", "cluster", "probes").
      shape: the released array's shape from `Dims`.
      sensitivity: its L2 sensitivity from `Dims` (derived from what it sums).
      natural_step: the lattice its clean values lie on, from q (votes: 2^-(q-1), counts: 1).
      statistic: (Statistic, lattice step) -> the clean values in int32 lattice units; traced
        inside the vote place's jit, never called on its own.
    """

    name: str
    measures: str
    counts_votes: bool
    needs: tuple[str, ...]
    shape: Callable[[Dims], tuple[int, ...]]
    sensitivity: Callable[[Dims], float]
    natural_step: Callable[[int], float]
    statistic: Callable[[Statistic, float], jax.Array]


KINDS: dict[str, ReleaseKind] = {}


def register_kind(kind: ReleaseKind) -> ReleaseKind:
    """Adds `kind` to the registry (a name can be registered once)."""
    if kind.name in KINDS:
        raise ValueError(f"release kind {kind.name!r} is already registered")
    KINDS[kind.name] = kind
    return kind


def unregister_kind(name: str) -> None:
    """Removes a kind added with `register_kind` (tests and plug-ins that clean up)."""
    KINDS.pop(name, None)


def kind_sensitivity(
    kind: str,
    *,
    q: int = 1,
    num_histograms: int = 1,
    num_plms: int = 1,
    adjacency: str = "add_remove",
) -> float:
    """L2 sensitivity of one release of ``kind`` (see the module docstring for each bound).

    Args:
      kind: a registered kind (``KINDS``).
      q: votes per private record (vote kinds).
      num_histograms: released histograms (1 = nearest, 2 = nearest and farthest; vote kinds).
      num_plms: K (usefulness).
      adjacency: "add_remove" or "replace_one".
    """
    check_choice("kind", kind, tuple(KINDS))
    check_choice("adjacency", adjacency, ADJACENCIES)
    q = check_int("q", q, 1)
    dims = Dims(
        q=q,
        num_histograms=check_int("num_histograms", num_histograms, 1),
        num_plms=check_int("num_plms", num_plms, 1),
        adjacency=adjacency,
    )
    return float(KINDS[kind].sensitivity(dims))


def measures(kind: str) -> str:
    """What a release of `kind` measures (for the ledger and the datasheet)."""
    return KINDS[kind].measures


# ------------------------------------------------------------------------ the built-in kinds


def _vote_step(q: int) -> float:
    return 2.0 ** -(int(q) - 1)


def _summed_votes_sensitivity(d: Dims) -> float:
    per_hist = float(np.sum(vote_weights(d.q)))
    return per_hist * math.sqrt(d.num_histograms) * (math.sqrt(2.0) if _replace(d) else 1.0)


def _replace(d: Dims) -> bool:
    return d.adjacency == "replace_one"


def _vote_units(s: Statistic, step: float) -> list[jax.Array]:
    return [jnp.where(s.syn_mask, to_units(h, step), 0) for h in s.votes]


def _segment_totals(by: str, size: Callable[[Dims], int]):
    def statistic(s: Statistic, step: float) -> jax.Array:
        ids = getattr(s, by)
        rows = [
            jax.ops.segment_sum(u, ids, num_segments=size(s.dims)) for u in _vote_units(s, step)
        ]
        return jnp.stack(rows)

    return statistic


def _usefulness(s: Statistic, step: float) -> jax.Array:
    kernels, biases = s.probes
    clean = usefulness_counts(s.priv_emb, s.priv_label, kernels, biases, s.priv_mask)
    return to_units(clean, step)


register_kind(
    ReleaseKind(
        name="per_sample",
        measures="Top-Q nearest/farthest vote histogram over every synthetic candidate",
        counts_votes=True,
        needs=(),
        shape=lambda d: (d.num_histograms, d.n),
        sensitivity=lambda d: l2_sensitivity(
            d.q, num_histograms=d.num_histograms, adjacency=d.adjacency
        ),
        natural_step=_vote_step,
        statistic=lambda s, step: jnp.stack(_vote_units(s, step)),
    )
)


def _segment_kind(name: str, by: str, size: Callable[[Dims], int], measures: str) -> ReleaseKind:
    """The Top-Q votes summed per segment `by` of the candidates (their PLM, their cluster)."""
    return ReleaseKind(
        name=name,
        measures=measures,
        counts_votes=True,
        needs=(by,),
        shape=lambda d: (d.num_histograms, size(d)),
        sensitivity=_summed_votes_sensitivity,
        natural_step=_vote_step,
        statistic=_segment_totals(by, size),
    )


register_kind(
    _segment_kind(
        "per_plm",
        "plm",
        lambda d: d.num_plms,
        "Top-Q votes summed per PLM (one K-vector per histogram)",
    )
)
register_kind(
    _segment_kind(
        "per_cluster",
        "cluster",
        lambda d: d.num_clusters,
        "Top-Q votes summed per k-means cluster of the synthetic candidates",
    )
)
register_kind(
    ReleaseKind(
        name="usefulness",
        measures="per PLM, private records its synthetic data's linear probe classifies right",
        counts_votes=False,
        needs=("probes",),
        shape=lambda d: (d.num_plms,),
        sensitivity=lambda d: math.sqrt(d.num_plms),
        natural_step=lambda q: 1.0,
        statistic=_usefulness,
    )
)


#: The grid private embeddings are rounded to before they are summed into class prototypes
#: (refined when sigma is small: `kernels.noise.lattice_step`).
PROTOTYPE_GRID = 2.0**-10


def _prototype_sums(s: Statistic, step: float) -> jax.Array:
    """Per class, the sum of the private embeddings, each clipped to norm 1 - step sqrt(d) / 2
    and rounded to the grid ``step * Z^d`` (so its norm stays <= 1), in lattice units."""
    radius = 1.0 - step * math.sqrt(s.dims.dim) / 2.0
    x = clip_rows(s.priv_emb.astype(jnp.float32), radius)
    units = jnp.round(x * (1.0 / step)).astype(jnp.int32)
    units = jnp.where(s.priv_mask[:, None], units, 0)
    return jax.ops.segment_sum(units, s.priv_label, num_segments=s.dims.num_classes)


register_kind(
    ReleaseKind(
        name="class_prototypes",
        measures="per class, the sum of the clipped private embeddings (a noisy class prototype)",
        counts_votes=False,
        needs=("classes",),
        shape=lambda d: (d.num_classes, d.dim),
        sensitivity=lambda d: 2.0 if _replace(d) else 1.0,
        natural_step=lambda q: PROTOTYPE_GRID,
        statistic=_prototype_sums,
    )
)

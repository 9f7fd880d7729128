"""How one run spreads over the processes of a multi-process job (docs/distributed.md).

Every process runs the same stages on the same inputs. Generation is split inside
`wasp_jax.models.generator` (each process samples its share of the rows with the rows' own
keys; the token ids are gathered), synthetic embedding here (`embed_synthetic`: contiguous
shares, gathered), and the vote runs once on the global mesh (`vote_mesh`) with the
synthetic axis split over all devices of all processes. Private texts are embedded by every
process for itself: they never cross the network, only the vote's (n_priv, q) candidates do,
inside the jitted vote. Before a vote the processes compare checksums of the population and
of the noise key, and after it of the noisy histograms, so nothing is released unless every
process holds the same thing. A fine-tuned small task model trains data parallel on the
global mesh (`stm_mesh`). Process 0 alone writes the workdir; `SharedCheckpoint` gives every
process the state that process 0 restored.

In a single process every helper here is the identity of the one-process code path.
"""

from __future__ import annotations

import jax
import numpy as np

from wasp_jax import distributed as dist
from wasp_jax.models.sharding import make_mesh
from wasp_jax.pipeline.run.checkpoint import Checkpoint


def vote_mesh(local_mesh):
    """The vote's mesh: one over every device of every process in a multi-process job."""
    if not dist.is_multi():
        return local_mesh
    return make_mesh(devices=jax.devices())


def stm_mesh(mode: str):
    """The STM's mesh: in a multi-process run a fine-tuned STM trains data parallel over
    every device of every process; otherwise (and for the probe) the single-device default."""
    if mode != "finetune" or not dist.is_multi():
        return None
    return make_mesh(devices=jax.devices())


def embed_synthetic(embedder, texts, *, progress: bool, cache: bool) -> np.ndarray:
    """Embeddings of synthetic `texts`, each process encoding its share of the embedder's
    batches, each batch exactly as one process would (data parallel)."""
    if not dist.is_multi():
        return np.asarray(embedder.embed(texts, progress=progress, cache=cache), np.float32)
    # Every process must encode the same batches, so none reads the (process 0's) cache.
    return np.asarray(embedder.embed(texts, progress=progress, split=True), np.float32)


def check_vote_inputs(round_: int, noise, texts, labels, mask) -> None:
    """Every process votes on the same population, split, and noise (else it stops).

    The noise is compared through words of a label no release uses: equal words mean the
    same secret, and they reveal nothing about the words any release reads."""
    if not dist.is_multi():
        return
    dist.check_same(
        f"round {round_}'s synthetic population",
        "\x00".join(texts),
        np.asarray(labels, np.int64),
        np.asarray(mask, bool),
    )
    dist.check_same(f"round {round_}'s noise source", noise.child("consistency check").words((1,)))


def check_population(what: str, pop) -> None:
    """Every process holds the same population (texts, labels, PLMs, rounds)."""
    if not dist.is_multi():
        return
    dist.check_same(
        what,
        "\x00".join(pop.texts),
        *(np.asarray(v, np.int64) for v in (pop.labels, pop.plm, pop.rounds)),
    )


def check_release(round_: int, votes) -> None:
    """Every process holds the same noisy histograms before any of them is used."""
    if not dist.is_multi():
        return
    hists = [np.asarray(h, np.float32) for h in votes.histograms().values()]
    dist.check_same(f"round {round_}'s noisy votes", *hists)


def check_released(what: str, *arrays) -> None:
    """Every process holds the same released (noisy) arrays before any of them is used."""
    if not dist.is_multi():
        return
    dist.check_same(what, *(np.asarray(a, np.float32) for a in arrays))


class SharedCheckpoint(Checkpoint):
    """A checkpoint that process 0 reads and writes; the others get its bytes over the wire."""

    def _read(self, path):
        data = super()._read(path) if dist.is_writer() else None
        return dist.broadcast_bytes(data, what=f"restoring {path.name}")

    def save(self, state, arrays=None) -> None:
        if dist.is_writer():
            super().save(state, arrays)

    def save_arrays(self, arrays) -> None:
        if dist.is_writer():
            super().save_arrays(arrays)


def checkpoint(workdir) -> Checkpoint:
    """The run's checkpoint: shared by process 0 in a multi-process job."""
    return SharedCheckpoint(workdir) if dist.is_multi() else Checkpoint(workdir)

"""The WASP-proto section of the run config (`WaspConfig.proto`, used by ``method="wasp_proto"``).

WASP-proto spends its whole budget on one release of noisy class prototypes (docs/method.md
§10); everything set here is post-processing of that release, so no key changes the privacy
spent.
"""

from __future__ import annotations

import dataclasses

from wasp_jax.config.sections import _check


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProtoConfig:
    """WASP-proto (method "wasp_proto").

    Attributes:
        dims: the prototypes live in a public subspace of this many dimensions (0 = the
            embedder's full space): the top principal directions of the round-0 candidates'
            embeddings (public: zero-shot text), after subtracting their mean. Every private
            embedding is centred, projected and scaled to unit norm before the release, so the
            sensitivity is unchanged while the noise spreads over `dims` coordinates instead of
            hundreds; candidates are compared with the prototypes in the same subspace.
        oversample: in rounds 1..T, each PLM generates this many candidates per row it keeps
            and keeps, per class, those of highest margin to the noisy prototypes (1 = keep
            everything generated, the plain method). Generation time grows about linearly.
        drop_other_class: also drop candidates whose margin is negative (the noisy
            prototypes put them nearer another class); a class left short is reported as
            shortfall, never padded with such rows.
    """

    dims: int = 16
    oversample: int = 1
    drop_other_class: bool = False

    def __post_init__(self):
        _check(self.dims >= 0, "proto.dims", f"must be >= 0 (0 = the full space), got {self.dims}")
        _check(
            1 <= self.oversample <= 16,
            "proto.oversample",
            f"must be in [1, 16] (candidates generated per kept row), got {self.oversample}",
        )

"""The generator-tuning section of the run config (`WaspConfig.tune`).

With ``tune.enabled``, a method that releases class prototypes (``method="wasp_proto"``)
preference-tunes each local PLM before every voted round: pairs of the previous round's
candidates of one class and PLM, the one of higher margin to the noisy prototypes preferred,
train LoRA adapters with the DPO loss against the round's starting weights; the round then
samples from the tuned model. The training reads synthetic text and post-noise margins only,
so no key here changes the privacy spent (docs/method.md §11).
"""

from __future__ import annotations

import dataclasses
import math

from wasp_jax.config.sections import _check

TARGETABLE = ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TuneConfig:
    """Preference-tuning of the local PLMs on DP feedback.

    Attributes:
        enabled: tune the local PLMs before each voted round (API PLMs and encoder-decoders
            keep prompt-only selection).
        rank: LoRA rank r.
        alpha: LoRA scale numerator (the adapter adds ``alpha / r * x A B``).
        targets: the projections that get adapters (of wq, wk, wv, wo, w_gate, w_up, w_down).
        steps: optimiser steps per PLM and round.
        batch_pairs: preference pairs per step.
        learning_rate: AdamW peak learning rate (after a linear warm-up).
        warmup_steps: linear warm-up steps.
        max_grad_norm: gradient clipping by global norm.
        beta: DPO temperature (how far from the reference the policy may move).
        min_gap: smallest margin difference a pair may have; narrower pairs are noise.
        max_pairs_per_class: most pairs per class and round, widest gaps first (0 = all).
        max_completion_tokens: completions are cut to this many tokens for training.
        save_every: adapters and optimiser state are checkpointed every this many steps.
    """

    enabled: bool = False
    rank: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = ("wq", "wk", "wv", "wo")
    steps: int = 20
    batch_pairs: int = 4
    learning_rate: float = 5e-4
    warmup_steps: int = 5
    max_grad_norm: float = 1.0
    beta: float = 0.1
    min_gap: float = 0.02
    max_pairs_per_class: int = 0
    max_completion_tokens: int = 64
    save_every: int = 20

    def __post_init__(self):
        for name in ("rank", "steps", "batch_pairs", "max_completion_tokens", "save_every"):
            value = getattr(self, name)
            _check(value >= 1, f"tune.{name}", f"must be >= 1, got {value}")
        for name in ("warmup_steps", "max_pairs_per_class"):
            value = getattr(self, name)
            _check(value >= 0, f"tune.{name}", f"must be >= 0, got {value}")
        for name in ("alpha", "learning_rate", "max_grad_norm", "beta"):
            value = getattr(self, name)
            _check(math.isfinite(value) and value > 0, f"tune.{name}", f"must be > 0, got {value}")
        _check(
            math.isfinite(self.min_gap) and self.min_gap >= 0,
            "tune.min_gap",
            f"must be a finite number >= 0, got {self.min_gap}",
        )
        bad = [t for t in self.targets if t not in TARGETABLE]
        _check(
            bool(self.targets) and not bad,
            "tune.targets",
            f"must name some of {', '.join(TARGETABLE)}; got {list(self.targets)}",
        )

"""Zero-shot baselines: the whole budget is round 0, with no private data.

``zerogen``: one PLM (ZeroGen); ``multi_zeroshot``: the budget split evenly over every PLM.
Both read no private data and release nothing.
"""

from __future__ import annotations

from wasp_jax.pipeline.methods import common
from wasp_jax.pipeline.methods.base import Method
from wasp_jax.pipeline.methods.registry import register_method


class ZeroShot(Method):
    """Zero-shot samples of every PLM, the whole budget in round 0."""

    name = "multi_zeroshot"
    summary = (
        "Multi-PLM zero-shot: several PLMs prompted zero-shot with the class; no private data "
        "is used."
    )
    has_rounds = False

    def preset(self, d: dict) -> None:
        """rounds = 0: the whole budget is the zero-shot start."""
        d["generation"].update(rounds=0, initial=None)

    def initial(self, inputs, state, k, budget):
        return common.zero_shot(inputs, state, k, budget)


class ZeroGen(ZeroShot):
    """Zero-shot samples of one PLM (ZeroGen)."""

    name = "zerogen"
    summary = "ZeroGen: one PLM prompted zero-shot with the class; no private data is used."
    one_plm = True

    def preset(self, d: dict) -> None:
        """rounds = 0 and the first PLM only."""
        super().preset(d)
        d["generation"]["plms"] = d["generation"]["plms"][:1]


MULTI_ZEROSHOT = register_method(ZeroShot())
ZEROGEN = register_method(ZeroGen())

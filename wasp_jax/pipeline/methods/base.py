"""The method protocol: what a way of building the synthetic set supplies to the runner.

The runner (`wasp_jax.pipeline.run.runner`) is the same for every method: round 0 per PLM,
then for t = 1..T one decision stage and one draw stage per PLM, then an optional
row-weighting stage. A method says, by overriding the members of `Method`:

* which config sections it reads and how it checks them (`sections`, `check_config`) and
  which fields it fixes when a config is switched to it (`preset`);
* how it sizes the first round (`first_vote_need`);
* what it releases about the private data per round (`release_request`, from which the
  privacy plan and the ledger follow);
* how it turns the round's noisy releases into the next round's decision (`decide`) and
  draws the candidates of each PLM (`initial`, `draw`), and whether it weights the rows
  (`weights_rows`, `row_weights`);
* how it describes itself to the ledger, the datasheet and the report (`name`, `summary`,
  `describe`).

Stages return typed results (`wasp_jax.pipeline.run.results`) and never change the inputs
or the state; the runner applies and commits them. A new method is one module that defines
a subclass and registers an instance (`wasp_jax.pipeline.methods.registry.register_method`);
docs/extending.md walks through it.
"""

from __future__ import annotations

import math
import pathlib
from typing import ClassVar

from wasp_jax.config import WaspConfig
from wasp_jax.config.sections import _check
from wasp_jax.pipeline.methods.common import zero_shot_baseline
from wasp_jax.pipeline.run.inputs import RunInputs
from wasp_jax.pipeline.run.results import Decided, Drawn, Weighted
from wasp_jax.pipeline.run.sizing import Need
from wasp_jax.pipeline.run.state import RunState
from wasp_jax.privacy.plan import PrivacyPlan, ReleaseRequest, plan_releases


class Method:
    """One method; subclasses override what differs (see the module docstring).

    Class attributes:
      name: the config's `method` value.
      summary: one sentence for the datasheet.
      sections: the config sections the method reads (besides task, seed and runtime).
      reads_private_data: whether any stage reads the private data.
      has_rounds: whether it runs rounds 1..T (else round 0 is the whole set, T = 0).
      one_plm: whether it uses exactly one PLM.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    sections: ClassVar[tuple[str, ...]] = ("generation",)
    reads_private_data: ClassVar[bool] = False
    has_rounds: ClassVar[bool] = True
    one_plm: ClassVar[bool] = False

    # -- the config -------------------------------------------------------------------------

    def preset(self, d: dict) -> None:
        """Adjusts a config dict switched to this method (in place); default: nothing."""

    def check_config(self, cfg: WaspConfig) -> None:
        """Refuses a config this method cannot run, naming the key and the fix.

        Raises:
          ConfigError: e.g. the wrong number of PLMs or rounds, or a budget that leaves no
            sample for a round.
        """
        self._check_dp_classifiers(cfg)
        _check(
            not cfg.tune.enabled or "tune" in self.sections,
            "tune.enabled",
            f"method {self.name!r} does not tune its generators; tuning on DP feedback needs "
            "method='wasp_proto' (or set tune.enabled=false)",
        )
        gen = cfg.generation
        if self.one_plm:
            _check(
                len(gen.plms) == 1,
                "generation.plms",
                f"method {self.name!r} uses exactly one PLM, got {len(gen.plms)}",
            )
        if not self.has_rounds:
            _check(gen.rounds == 0, "generation.rounds", f"method {self.name!r} needs rounds=0")
            return
        _check(gen.rounds >= 1, "generation.rounds", f"method {self.name!r} needs >= 1")

    def _check_dp_classifiers(self, cfg: WaspConfig) -> None:
        """`eval.dp_classifiers` trains on the private data at the run's (epsilon, delta):
        refused for a method that reads none, or a run without noise."""
        if not cfg.eval.dp_classifiers:
            return
        _check(
            self.reads_private_data,
            "eval.dp_classifiers",
            f"method {self.name!r} reads no private data, so there is no budget to train DP "
            "classifiers with; set eval.dp_classifiers=false (or use a method that reads "
            "private data)",
        )
        _check(
            math.isfinite(cfg.privacy.epsilon),
            "eval.dp_classifiers",
            "privacy.epsilon is inf (no noise), so a classifier at that epsilon would not be "
            "DP; set eval.dp_classifiers=false or a finite privacy.epsilon",
        )

    def first_vote_need(self, cfg: WaspConfig) -> Need | None:
        """Candidates per class the first decision needs (None: it selects nothing)."""
        return None

    # -- candidates and models --------------------------------------------------------------

    def replays(self, cfg: WaspConfig) -> bool:
        """Whether candidates are read from `replay.pools` instead of generated."""
        return False

    def plm_names(self, cfg: WaspConfig) -> list[str]:
        """The candidate sources in order: the PLMs, or the replayed pools' file stems."""
        if self.replays(cfg):
            return [pathlib.Path(p).stem for p in cfg.replay.pools]
        return list(cfg.generation.plms)

    def embeds(self, cfg: WaspConfig) -> bool:
        """Whether the rounds embed candidates (so the embedder is loaded up front)."""
        return self.reads_private_data

    # -- privacy ------------------------------------------------------------------------------

    def release_request(self, cfg: WaspConfig) -> ReleaseRequest | None:
        """What a round releases about the private data (None: nothing)."""
        return None

    def releases_in_round(self, cfg: WaspConfig, t: int) -> bool:
        """Whether round t's decision releases something (the ledger records it first)."""
        return True

    def privacy_plan(self, cfg: WaspConfig) -> PrivacyPlan | None:
        """The run's privacy plan, calibrated for `release_request`."""
        return plan_releases(cfg, self.release_request(cfg))

    # -- stages -------------------------------------------------------------------------------

    def initial(self, inputs: RunInputs, state: RunState, k: int, budget: int) -> Drawn:
        """Round 0 of PLM k: `budget` candidates with exact per-class quotas."""
        raise NotImplementedError

    def decide(self, inputs: RunInputs, state: RunState, t: int) -> Decided:
        """Round t's decision (selection and next budgets) from its noisy releases."""
        raise NotImplementedError(f"method {self.name!r} has no rounds")

    def draw(self, inputs: RunInputs, state: RunState, t: int, k: int) -> Drawn:
        """Round t's candidates of PLM k, following the round's decision."""
        raise NotImplementedError(f"method {self.name!r} has no rounds")

    def draws_baseline(self, cfg: WaspConfig) -> bool:
        """Whether the evaluation's zero-shot baseline is topped up to the synthetic set's
        size by `baseline_draw` (not for replayed candidates, nor without rounds)."""
        return self.has_rounds and not self.replays(cfg)

    def baseline_draw(self, inputs: RunInputs, state: RunState, k: int, budget: int) -> Drawn:
        """PLM k's share of the extra zero-shot rows of the equal-size baseline."""
        return zero_shot_baseline(inputs, state, k, budget)

    def weights_rows(self, cfg: WaspConfig) -> bool:
        """Whether a last stage gives every synthetic row a training weight."""
        return False

    def row_weights(self, inputs: RunInputs, state: RunState) -> Weighted:
        raise NotImplementedError(f"method {self.name!r} does not weight rows")

    # -- description --------------------------------------------------------------------------

    def describe(self, cfg: WaspConfig) -> dict:
        """The method as the run's outputs state it (`release/method.json`)."""
        return {
            "name": self.name,
            "summary": self.summary,
            "reads_private_data": self.reads_private_data,
            "candidates": "replayed pools" if self.replays(cfg) else "generated by the PLMs",
            "sources": self.plm_names(cfg),
            "rounds": cfg.generation.rounds if self.has_rounds else 0,
            "releases": [] if (r := self.release_request(cfg)) is None else list(r.kinds),
            "config_sections": list(self.sections),
        }

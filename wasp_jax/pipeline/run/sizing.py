"""Sizing a run for its task: the budget, rounds, q and S against the number of classes.

The first vote is the tightest: it sees only the zero-shot start, about
N_0 * (1 - voting.valid_fraction) / C samples per class (N_0 = budget / (rounds + 1) unless
`generation.initial` is set), and every later round adds to that population. So:

* fewer than `voting.q` candidates per class cannot work (a private sample's Top-Q votes
  would be truncated to the class): refused, with the smallest budget that works;
* fewer than 2 S per class works but degenerates: the S good and S bad examples of a
  contrastive prompt cannot both be full and disjoint (the selection keeps them disjoint,
  so the bad set is short): a warning, with the budget that avoids it.

Both checks are on public quantities (the config and the number of classes) and run before
any model is loaded.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

from wasp_jax.config import WaspConfig
from wasp_jax.config.sections import GENERATION_LIMITS
from wasp_jax.errors import ConfigError, DataWarning


@dataclasses.dataclass(frozen=True)
class Need:
    """Candidates per class the first vote needs: `hard` to work, `soft` not to degenerate."""

    hard: int
    soft: int
    why_hard: str
    why_soft: str


def selection_need(cfg: WaspConfig, *, votes: bool, pairs: bool) -> Need:
    """What a selecting method's first round needs per class.

    Args:
      votes: the selection reads Top-Q votes (else it draws at random).
      pairs: its prompts pair S good with S bad examples (else S good ones only).
    """
    q, s = cfg.voting.q, cfg.selection.s
    hard = q if votes else 1
    soft = max(hard, 2 * s if pairs else s)
    why_soft = f"S={s} good and S={s} bad examples, disjoint" if pairs else f"S={s} good examples"
    return Need(hard, soft, f"voting.q={q}" if votes else "one candidate", why_soft)


def first_vote_per_class(cfg: WaspConfig, num_classes: int) -> int:
    """Candidates per class the first vote sees (the smallest class, roughly)."""
    n0 = cfg.generation.initial_size
    return int(n0 * (1 - cfg.voting.valid_fraction)) // num_classes


def smallest_budget(cfg: WaspConfig, num_classes: int, per_class: int) -> int | None:
    """The smallest generation.budget whose first vote has `per_class` candidates per class
    (None when generation.initial is set: then N_0 itself must grow, or when over the limit)."""
    gen = cfg.generation
    if gen.initial is not None:
        return None
    keep = 1 - cfg.voting.valid_fraction
    n0 = max(1, math.ceil(per_class * num_classes / keep))
    while int(n0 * keep) // num_classes < per_class:
        n0 += 1
    budget = max(gen.budget, n0 * (gen.rounds + 1))
    return budget if budget <= GENERATION_LIMITS["budget"] else None


def _raise_hint(cfg: WaspConfig, num_classes: int, per_class: int) -> str:
    budget = smallest_budget(cfg, num_classes, per_class)
    if budget is not None:
        return f"the smallest generation.budget that gives it is {budget}"
    if cfg.generation.initial is not None:
        n0 = math.ceil(per_class * num_classes / (1 - cfg.voting.valid_fraction))
        return f"raise generation.initial to at least {n0}"
    return "no budget within the limits gives it"


def check_sizing(cfg: WaspConfig, num_classes: int, n: Need | None) -> int:
    """Refuses a config whose first vote cannot work; warns when it degenerates.

    `n` is what the method's first round needs (`Method.first_vote_need`; None: it selects
    nothing). Returns the candidates per class of the first vote (0 when nothing is selected).

    Raises:
      ConfigError: fewer candidates per class than voting.q, naming the smallest budget.
    Warns:
      DataWarning: fewer than the 2 S (or S) a full, disjoint good/bad selection needs.
    """
    if n is None:
        return 0
    have = first_vote_per_class(cfg, num_classes)
    gen = cfg.generation
    what = (
        f"the first vote sees about {have} synthetic samples per class (N_0 = "
        f"{gen.initial_size} zero-shot samples over {num_classes} classes"
        + (f", {cfg.voting.valid_fraction:g} held out" if cfg.voting.valid_fraction else "")
        + ")"
    )
    if have < n.hard:
        raise ConfigError(
            f"generation.budget={gen.budget} is too small for {num_classes} classes: {what}, "
            f"fewer than {n.why_hard}; {_raise_hint(cfg, num_classes, n.hard)} (or lower "
            "voting.q)"
        )
    if have < n.soft:
        warnings.warn(
            f"{what}, fewer than {n.soft} ({n.why_soft}), so the first rounds' prompts get "
            f"fewer examples; {_raise_hint(cfg, num_classes, n.soft)} (or lower selection.s)",
            DataWarning,
            stacklevel=2,
        )
    return have


def sized_budget(cfg: WaspConfig, num_classes: int, n: Need | None) -> int:
    """The config's budget, raised to the smallest one whose first vote does not degenerate
    (`n`: what the method's first round needs, None: nothing)."""
    if n is None:
        return cfg.generation.budget
    budget = smallest_budget(cfg, num_classes, n.soft)
    return cfg.generation.budget if budget is None else budget

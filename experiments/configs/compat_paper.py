"""compat_paper: the original code's behaviour and accounting (docs/method.md §2.2-§2.7, §6.5).

Diff from base.py: `privacy.accounting="classic"` (sigma = Delta * sqrt(2 ln(1.25/delta)) *
sqrt(T) / epsilon with the original's Delta = 4, i.e. sigma = 9.6896 at epsilon = 4,
delta = 1e-5, T = 4), `selection.compat_sign_flip=True` (normalise-then-rank, which reverses
when a noisy class sum is negative), `generation.plm_score="compat"` (share of normalised
vote mass over share of samples) and `voting.valid_fraction=0.1` (the per-round 90/10 split).
Use it to compare the corrected defaults with a faithful reproduction; the classic formula
is the original's, not a tight accounting of the mechanism (docs/method.md §6.4).

Reproduce (from the repository root):
    wasp-jax run --config experiments/configs/compat_paper.py --workdir runs/compat_paper/s0

Expected runtime: as base.py, an estimated 1-2 h on the 2-core dev CPU (estimate).
"""

import pathlib

from wasp_jax import config


def get_config() -> config.WaspConfig:
    base = config.load_config(str(pathlib.Path(__file__).with_name("base.py")))
    return config.replace(
        base,
        **{
            "privacy.accounting": "classic",
            "selection.compat_sign_flip": True,
            "generation.plm_score": "compat",
            "voting.valid_fraction": 0.1,
        },
    )

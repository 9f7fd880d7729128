"""wasp_no_weighting_imdb: ablation "w/o PLM importance weighting" (paper Table E1; ALG. 2.7).

Diff from base.py: `generation.plm_weighting=False`: every round's new budget is split evenly
over the PLMs instead of by softmax(PLM score / tau). Votes, noise and contrastive prompts as
base.py, so the privacy ledger is the same.

Privacy: sigma = 3.781 (RDP, add/remove, L2 sensitivity 1.633, T = 4), as base.py.

Reproduce (from the repository root):
    wasp-jax run --config experiments/configs/wasp_no_weighting_imdb.py \
        --workdir runs/wasp_no_weighting_imdb/s0

Expected runtime: as base.py, an estimated 1-2 h on the 2-core dev CPU (estimate).
"""

import pathlib

from wasp_jax import config


def get_config() -> config.WaspConfig:
    base = config.load_config(str(pathlib.Path(__file__).with_name("base.py")))
    return config.replace(base, **{"generation.plm_weighting": False})

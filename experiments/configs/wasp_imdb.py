"""wasp_imdb: WASP on IMDb with the two offline PLMs (docs/method.md §2; paper Table 1 analogue).

Diff from base.py: none; base.py is the WASP main line (Q = 8, S = 8, contrastive prompts,
PLM weighting, epsilon = 4, delta = 1e-5, T = 4, N = 600, M = 100, corrected defaults).

Privacy: sigma = 3.781 (RDP, add/remove, L2 sensitivity 1.633, T = 4), as base.py.

Reproduce (from the repository root):
    wasp-jax run --config experiments/configs/wasp_imdb.py --workdir runs/wasp_imdb/s0
    wasp-jax run --config experiments/configs/wasp_imdb.py --workdir runs/wasp_imdb/s1 --set seed=1

Expected runtime: as base.py, an estimated 1-2 h on the 2-core dev CPU (estimate).
"""

import pathlib

from wasp_jax import config


def get_config() -> config.WaspConfig:
    return config.load_config(str(pathlib.Path(__file__).with_name("base.py")))

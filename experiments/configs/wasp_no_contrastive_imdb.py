"""wasp_no_contrastive_imdb: ablation "w/o contrastive" (paper Table E1; docs/method.md §2.8).

Diff from base.py: `generation.contrastive=False` and `voting.release=("nearest",)`: prompts
show S = 8 good examples only (the task's non-contrastive template), so only the nearest
histogram is released and the L2 sensitivity halves (the original's Delta = 2). PLM weighting
stays on.

Privacy: sigma = 2.673 (RDP, add/remove, L2 sensitivity 1.155 for the nearest histogram
only, T = 4).

Reproduce (from the repository root):
    wasp-jax run --config experiments/configs/wasp_no_contrastive_imdb.py \
        --workdir runs/wasp_no_contrastive_imdb/s0

Expected runtime: as base.py, an estimated 1-2 h on the 2-core dev CPU (estimate).
"""

import pathlib

from wasp_jax import config


def get_config() -> config.WaspConfig:
    base = config.load_config(str(pathlib.Path(__file__).with_name("base.py")))
    return config.replace(base, **{"generation.contrastive": False, "voting.release": ("nearest",)})

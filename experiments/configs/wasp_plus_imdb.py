"""wasp_plus_imdb: WASP+ on IMDb with the two offline PLMs (docs/method.md §9).

Diff from base.py: `method="wasp_plus"`. Each round releases, instead of per-sample vote
histograms, (1) per PLM the number of the 100 private reviews that a linear probe fitted on
that PLM's current synthetic rows classifies correctly (a 2-vector, sensitivity sqrt(2)) and
(2) the nearest and farthest Top-8 votes summed per k-means cluster of the candidates (16
clusters per class, sensitivity 2.817). The budget (epsilon = 4, delta = 1e-5, RDP) is split
half and half over the T = 4 rounds' 8 releases: sigma = 4.630 for usefulness, 8.616 for the
cluster totals. The next round's PLM budgets are softmax(noisy counts / 5 records, about one
noise std); the contrastive prompts' good and bad examples come from the clusters with the
highest noisy nearest and farthest totals; synthetic.jsonl carries a training weight per row
from the last round's noisy cluster totals.

Reproduce (from the repository root):
    wasp-jax run --config experiments/configs/wasp_plus_imdb.py --workdir runs/wasp_plus/s0

Expected runtime: as base.py (generation dominates), an estimated 1-2 h on the 2-core dev CPU
(estimate, not measured).
"""

import pathlib

from wasp_jax import config


def get_config() -> config.WaspConfig:
    base = config.load_config(str(pathlib.Path(__file__).with_name("base.py")))
    return config.replace(base, method="wasp_plus")

"""wasp_plus_replay_imdb: WASP+ over the authors' six real IMDb pools (docs/method.md §9).

Diff from replay_imdb.py: `method="wasp_plus"` (with `replay.pools` set, so candidates are
drawn from the pools instead of generated) and the IMDb table's replay sizes: N = 600 over T =
2 rounds (N_0 = 200, 33-34 per pool). Each round releases, instead of per-sample vote
histograms, (1) per pool the number of the 100 private reviews that a linear probe fitted on
that pool's current rows classifies correctly (a 6-vector, sensitivity sqrt(6)) and (2) the
nearest and farthest Top-8 votes summed per k-means cluster of the candidates (16 clusters per
class; sensitivity sqrt(2) * sum(w) = 2.817). The budget is split half and half over the 2 x 2
releases (RDP, epsilon = 4, delta = 1e-5): sigma = 5.671 for usefulness, 6.092 for the cluster
totals. The next round's pool budgets are softmax(noisy counts / 5 records, about one noise
std); each pool's rows are drawn by cluster quotas (the next 3 x quota unused rows, assigned to
the nearest centre, taken in proportion to the positive noisy cluster totals); good and bad
examples come from the highest-voted clusters; synthetic.jsonl carries a training weight per
row from the last round's noisy cluster totals. The pools are only on the project's machines.

Reproduce (from the repository root):
    wasp-jax run --config experiments/configs/wasp_plus_replay_imdb.py --workdir runs/wpr/s0

Expected runtime: measured 2 min 42 s on the 2-core dev CPU shared with other jobs (embedding
about 1,800 pool rows and the 100 private reviews, two k-means and twelve probe fits), with
`--set eval.test_path=` (no evaluation).
"""

import pathlib

from wasp_jax import config


def get_config() -> config.WaspConfig:
    base = config.load_config(str(pathlib.Path(__file__).with_name("replay_imdb.py")))
    return config.replace(
        base,
        **{
            "method": "wasp_plus",
            "generation.budget": 600,
            "generation.rounds": 2,
        },
    )

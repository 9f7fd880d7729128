"""wasp_proto_imdb: WASP-proto on IMDb with the two offline PLMs (docs/method.md §10).

Diff from base.py: `method="wasp_proto"`. One release, at round 1, of the per-class sums of
the 100 private reviews' MiniLM embeddings, each centred, projected onto the 16-dimensional
public subspace of the zero-shot start (`proto.dims`) and unit-normed (sensitivity 1 under
add/remove), takes the whole budget (epsilon = 4, delta = 1e-5, RDP): sigma = 1.158 on each of
the 2 x 16 sums; every round then picks the good and the most confusable examples of each
class, and the PLM budgets, from the candidates' margins to those noisy prototypes. No privacy
is spent after round 1. `--set proto.oversample=2` generates two candidates per kept row and
keeps the higher-margin ones.

Reproduce (from the repository root):
    wasp-jax run --config experiments/configs/wasp_proto_imdb.py --workdir runs/wasp_proto/s0

Expected runtime: as base.py (generation dominates; estimate, not measured).
"""

import pathlib

from wasp_jax import config


def get_config() -> config.WaspConfig:
    base = config.load_config(str(pathlib.Path(__file__).with_name("base.py")))
    return config.replace(base, method="wasp_proto")

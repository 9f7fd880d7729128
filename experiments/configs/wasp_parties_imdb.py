"""wasp_parties_imdb: WASP with L = 4 data parties and a Dirichlet split (docs/method.md §5.2).

Diff from base.py: `data.num_parties=4`, `data.party_alpha=1.0` (each class's private samples
split over the parties with Dirichlet(1.0) proportions, as in the paper's federated runs) and
M = 300 private samples (the paper's size for L = 2, 4, 10): the first 300 lines of
`../shared/data/imdb/train.jsonl` (balanced and shuffled; only on the project's machines).
Each party adds Gaussian noise with std sigma / sqrt(L) to its own histograms and only the sum
is released: the guarantee assumes secure aggregation (the datasheet says so).

Privacy: sigma = 3.781 for the summed histograms (RDP, add/remove, T = 4), i.e. 1.766 per
party.

Reproduce (from the repository root):
    wasp-jax run --config experiments/configs/wasp_parties_imdb.py \
        --workdir runs/wasp_parties_imdb/s0

Expected runtime: as base.py (the votes are cheap), an estimated 1-2 h on the 2-core dev CPU
(estimate).
"""

import pathlib

from wasp_jax import config

SHARED_DATA = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data"


def get_config() -> config.WaspConfig:
    base = config.load_config(str(pathlib.Path(__file__).with_name("base.py")))
    return config.replace(
        base,
        **{
            "data.private_path": str(SHARED_DATA / "imdb" / "train.jsonl"),
            "data.num_private": 300,
            "data.num_parties": 4,
            "data.party_alpha": 1.0,
        },
    )

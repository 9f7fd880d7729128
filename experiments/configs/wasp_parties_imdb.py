"""wasp_parties_imdb: WASP with L = 4 data parties and a Dirichlet split (docs/method.md §5.2).

Diff from base.py: `data.num_parties=4`, `data.party_alpha=1.0` (each class's private samples
split over the parties with Dirichlet(1.0) proportions, as in the paper's federated runs) and
M = 300 private samples (the paper's size for L = 2, 4, 10): a private file holding the first
300 lines of `../shared/data/imdb/train.jsonl` (balanced and shuffled; only on the project's
machines), written once by `wasp-jax prepare-private` before the run. The guarantee is stated
for the records of that file. Each party adds Gaussian noise with std sigma / sqrt(L) to its
own histograms and only the sum is released: the guarantee assumes secure aggregation (the
datasheet says so).

Privacy: sigma = 3.781 for the summed histograms (RDP, add/remove, T = 4), i.e. 1.891 per
party.

Reproduce (from the repository root):
    wasp-jax prepare-private --task imdb --data ../shared/data/imdb/train.jsonl \
        --out runs/data/imdb_train_first300.jsonl --num 300
    wasp-jax run --config experiments/configs/wasp_parties_imdb.py \
        --workdir runs/wasp_parties_imdb/s0

Expected runtime: as base.py (the votes are cheap), an estimated 1-2 h on the 2-core dev CPU
(estimate).
"""

import pathlib

from wasp_jax import config
from wasp_jax.data import shared_data_dir

REPO = pathlib.Path(__file__).resolve().parents[2]
SHARED_DATA = shared_data_dir()
#: the source the private file is cut from, and the file itself (see Reproduce above)
SOURCE = SHARED_DATA / "imdb" / "train.jsonl"
PRIVATE = REPO / "runs" / "data" / "imdb_train_first300.jsonl"
NUM_PRIVATE = 300


def get_config() -> config.WaspConfig:
    base = config.load_config(str(pathlib.Path(__file__).with_name("base.py")))
    return config.replace(
        base,
        **{
            "data.private_path": str(PRIVATE),
            "data.num_parties": 4,
            "data.party_alpha": 1.0,
        },
    )

"""multi_zeroshot_imdb: zero-shot data from both PLMs, no private data (docs/method.md §4).

Diff from base.py: `with_method(base, "multi_zeroshot")`: rounds = 0, all N = 600
samples generated zero-shot, split evenly over the two PLMs, exact per-class quotas. No
private data, no privacy spent. The no-private-data reference for WASP's gains.

Reproduce (from the repository root):
    wasp-jax run --config experiments/configs/multi_zeroshot_imdb.py \
        --workdir runs/multi_zeroshot_imdb/s0

Expected runtime: an estimated 1-2 h on the 2-core dev CPU (estimate).
"""

import pathlib

from wasp_jax import config
from wasp_jax.pipeline.methods import with_method


def get_config() -> config.WaspConfig:
    base = config.load_config(str(pathlib.Path(__file__).with_name("base.py")))
    return with_method(base, "multi_zeroshot")

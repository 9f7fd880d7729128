"""zerogen_imdb: ZeroGen, zero-shot data from one PLM, no private data (docs/method.md §4).

Diff from base.py: `with_method(base, "zerogen")`: the first PLM only, rounds = 0, all
N = 600 samples generated zero-shot with exact per-class quotas. No private data is read and
no privacy is spent (privacy.json records epsilon spent = 0).

Reproduce (from the repository root):
    wasp-jax run --config experiments/configs/zerogen_imdb.py --workdir runs/zerogen_imdb/s0

Expected runtime: an estimated 0.5-1 h on the 2-core dev CPU (estimate).
"""

import pathlib

from wasp_jax import config
from wasp_jax.pipeline.methods import with_method


def get_config() -> config.WaspConfig:
    base = config.load_config(str(pathlib.Path(__file__).with_name("base.py")))
    return with_method(base, "zerogen")

"""random_control_imdb: WASP's prompts from random same-class samples, no votes (docs/method.md §4).

Diff from base.py: `with_method(base, "random_control")`: the contrastive prompts'
good and bad examples are random same-class synthetic samples instead of the noisy-vote
top/bottom; no private data, no privacy spent; budget split uniformly. Separates the effect of
the DP votes from the effect of few-shot prompting itself.

Reproduce (from the repository root):
    wasp-jax run --config experiments/configs/random_control_imdb.py \
        --workdir runs/random_control_imdb/s0

Expected runtime: as base.py, an estimated 1-2 h on the 2-core dev CPU (estimate).
"""

import pathlib

from wasp_jax import config
from wasp_jax.pipeline.methods import with_method


def get_config() -> config.WaspConfig:
    base = config.load_config(str(pathlib.Path(__file__).with_name("base.py")))
    return with_method(base, "random_control")

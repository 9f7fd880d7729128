"""aug_pe_imdb: the Aug-PE baseline inside the same machinery (docs/method.md §4).

Diff from base.py: `with_method(base, "aug_pe")`: the first PLM only
(SmolLM2-135M-Instruct), Q = 1, only the nearest histogram is released (sensitivity of one
histogram), rephrase variations of the most-voted samples, no contrast, no PLM weighting. Same
epsilon, delta, T, N and private data as base.py.

Privacy: sigma = 2.315 (RDP, add/remove, L2 sensitivity 1 for one Top-1 histogram, T = 4).

Reproduce (from the repository root):
    wasp-jax run --config experiments/configs/aug_pe_imdb.py --workdir runs/aug_pe_imdb/s0

Expected runtime: an estimated 0.5-1 h on the 2-core dev CPU (one small PLM; estimate).
"""

import pathlib

from wasp_jax import config
from wasp_jax.pipeline.methods import with_method


def get_config() -> config.WaspConfig:
    base = config.load_config(str(pathlib.Path(__file__).with_name("base.py")))
    return with_method(base, "aug_pe")

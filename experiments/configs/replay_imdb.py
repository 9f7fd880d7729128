"""replay_imdb: WASP's DP voting over the authors' six real zero-shot pools (docs/method.md §4).

Diff from base.py: `method="replay"` with `replay.pools` = the six WASP IMDb pools in
`../shared/data/imdb_synthetic/` (GPT-2-xl, Llama-2-7b-chat, Vicuna-7b-1.5, OPT-6.7b,
ChatGLM3-6b-base, Flan-T5-xl; 5,062-8,482 texts each, labels 0 = negative, 1 = positive), and
the paper's sizes N = 6000, T = 4 (N_0 = 1200, 200 per PLM), Q = 8, epsilon = 4,
delta = 1e-5. Each round draws the allocated number of not-yet-used candidates per PLM and
class from its pool (file order) instead of generating, so no PLM is loaded; only the
embedder runs. The pools are only present on the project's machines.

Privacy: sigma = 3.781 (RDP, add/remove, L2 sensitivity 1.633, T = 4), as base.py.

Reproduce (from the repository root):
    wasp-jax run --config experiments/configs/replay_imdb.py --workdir runs/replay_imdb/s0

Expected runtime: measured 14.5 min for the synthetic data (embedding 6,000 texts, 4 votes)
on the 2-core dev CPU while shared with other jobs (load about 12). The probe evaluation on
the 3,000 test reviews re-embeds both sets and took 32 min more under the same load (add
`--set eval.test_path=` to skip it). Seed 0 gave probe accuracy 0.7247 +- 0.0035 (3 probe
seeds) on those 3,000 reviews.
"""

import pathlib

from wasp_jax import config
from wasp_jax.data import shared_data_dir

SHARED_DATA = shared_data_dir()
POOLS = (
    "gpt2-xl",
    "llama-2-7b-chat-hf",
    "vicuna-7b-1.5v",
    "opt-6.7b",
    "chatglm3-6b-base",
    "flan-t5-xl",
)


def get_config() -> config.WaspConfig:
    base = config.load_config(str(pathlib.Path(__file__).with_name("base.py")))
    pools = tuple(str(SHARED_DATA / "imdb_synthetic" / f"{name}.jsonl") for name in POOLS)
    return config.replace(
        base,
        **{
            "method": "replay",
            "replay.pools": pools,
            "generation.budget": 6000,
            "generation.rounds": 4,
        },
    )

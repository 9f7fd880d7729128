"""Base config for the IMDb experiments: every other file here is a diff from this one.

Setting: WASP main line (docs/method.md §2, §5.1) scaled to the offline models: K = 2 PLMs
(SmolLM2-135M-Instruct, Gemma-3-270M), embedder all-MiniLM-L6-v2, M = 100 private reviews
(the bundled balanced file `wasp_jax/data/imdb/private.jsonl`, 50 per class, see its
PROVENANCE.md), Q = 8, S = 8, epsilon = 4, delta = 1e-5, T = 4 rounds, N = 600 synthetic
samples (N_0 = N / (T + 1) = 120). Downstream test set: the 3,000 real reviews of
`../shared/data/imdb/test.jsonl` (only present on the project's machines).

Privacy: sigma = 3.781 per noisy histogram entry (RDP accounting, add/remove adjacency, L2
sensitivity 1.633 for Q = 8 with both histograms, T = 4 releases).

Reproduce (from the repository root):
    wasp-jax run --config experiments/configs/base.py --workdir runs/base

Expected runtime: generation dominates; on the 2-core dev CPU an estimated 1-2 h (about 5-10 s
per generated sample for the two PLMs, an estimate, not a measurement); minutes on one GPU.
"""

import pathlib

from wasp_jax import config
from wasp_jax.data import bundled_path, shared_data_dir

#: The repository root and the project's shared offline data (next to the repository).
REPO = pathlib.Path(__file__).resolve().parents[2]
SHARED_DATA = shared_data_dir()


def get_config() -> config.WaspConfig:
    return config.replace(
        config.base_config(),
        **{
            "method": "wasp",
            "seed": 0,
            "task": "imdb",
            "data.private_path": str(bundled_path("imdb", "private.jsonl")),
            "generation.plms": ("smollm2-135m-instruct", "gemma3-270m"),
            "generation.budget": 600,
            "generation.rounds": 4,
            "embedder.name": "all-minilm-l6-v2",
            "privacy.epsilon": 4.0,
            "privacy.delta": 1e-5,
            "voting.q": 8,
            "selection.s": 8,
            "eval.test_path": str(SHARED_DATA / "imdb" / "test.jsonl"),
            "eval.seeds": (0, 1, 2),
        },
    )

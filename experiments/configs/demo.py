"""demo: the embedded default that `wasp-jax demo` runs.

Diff from base.py: identical to `wasp_jax.config.demo_config()` (the single source of truth):
N = 48 over T = 2 rounds (N_0 = 16: 8 zero-shot samples per class, so S = 4 good and 4 bad
examples per prompt), 8-32 new tokens per sample, batches of 8, everything else as base (bundled 100
private IMDb reviews, SmolLM2-135M + Gemma-3-270M, all-MiniLM-L6-v2, epsilon = 4,
delta = 1e-5), and no downstream evaluation (`--set eval.test_path=...` or `wasp-jax demo
--eval` adds it on the bundled 500 real test reviews).

Privacy: sigma = 2.673 (RDP, add/remove, L2 sensitivity 1.633, T = 2 releases).

Reproduce (from the repository root; both commands run the same config):
    make demo        # = wasp-jax demo --workdir runs/demo
    wasp-jax run --config experiments/configs/demo.py --workdir runs/demo

Expected runtime: at most 10 minutes on the 2-core dev CPU.
"""

from wasp_jax import config


def get_config() -> config.WaspConfig:
    return config.demo_config()

"""wasp_proto_tune_imdb: WASP-proto with the local PLMs tuned on DP feedback (docs/method.md §11).

Diff from wasp_proto_imdb.py: `tune.enabled=True`. Before each voted round, each local PLM is
preference-tuned: pairs of the previous round's candidates of one class, the one of higher
margin to the noisy class prototypes preferred, train LoRA adapters (rank 8 on q, k, v, o)
with the DPO loss against the PLM as the round starts (20 AdamW steps of 4 pairs), and the
round samples from the tuned PLM. The training reads synthetic text and post-noise margins
only: the privacy spent is that of wasp_proto_imdb.py, one release at sigma = 1.158.

Reproduce (from the repository root):
    wasp-jax run --config experiments/configs/wasp_proto_tune_imdb.py --workdir runs/proto_tune/s0

Expected runtime: as wasp_proto_imdb.py plus the tuning, measured in the task table
(`experiments/results/tasks_table.json`, per-round tuning and generation seconds).
"""

import pathlib

from wasp_jax import config


def get_config() -> config.WaspConfig:
    base = config.load_config(str(pathlib.Path(__file__).with_name("wasp_proto_imdb.py")))
    return config.replace(base, **{"tune.enabled": True, "tune.steps": 20})

"""wasp-jax: differentially private synthetic text via weighted multi-PLM fusion (WASP), in JAX.

The package reads like the algorithm (docs/method.md); imports run one way, top to bottom:

  cli/        every `wasp-jax` command
  pipeline/   the loop: workdir, run state, rounds, generation, the DP vote, selection
  stm/        the small task model and the evaluation of a synthetic set
  outputs/    report, datasheet and plots of a finished run
  privacy/    sensitivity, accounting and calibration, the privacy plan and the ledger
  models/     the Flax models, tokenizers, loaders, sampler, generator and embedder
  errors, config, tasks, data, class_checks, budget   shared leaves
  kernels     pure array -> array functions (the repository's kernels/ folder)

The names below are the public entry points; they are imported on first use, so that
`import wasp_jax` stays light.
"""

import importlib

__version__ = "0.1.0"

_PUBLIC = {
    "run": "wasp_jax.pipeline.runner",
    "load_generator": "wasp_jax.models.generator",
    "load_embedder": "wasp_jax.models.embedder",
    "vote_and_noise": "wasp_jax.pipeline.vote",
    "calibrate_sigma": "wasp_jax.privacy.accounting",
    "privacy_plan": "wasp_jax.privacy.plan",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'wasp_jax' has no attribute {name!r}")

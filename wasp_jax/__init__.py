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
`import wasp_jax` stays light. A run on your own data:

    import wasp_jax

    task = wasp_jax.load_task("my_task.json")            # or a built-in name: "imdb"
    rows = wasp_jax.read_labeled_jsonl("private.jsonl", label_names=task.labels)
    cfg = wasp_jax.replace(
        wasp_jax.demo_config(),
        **{"task": "my_task.json", "data.private_path": "private.jsonl",
           "eval.test_path": "test.jsonl", "generation.budget": 192},
    )
    result = wasp_jax.run(cfg, "runs/mine")   # resumable; shareable outputs in runs/mine/release
    print(result.synthetic_path, result.epsilon_spent)

    gen = wasp_jax.load_generator("smollm2-135m-instruct")  # the pieces, one by one
    emb = wasp_jax.load_embedder("all-minilm-l6-v2")
    scores = wasp_jax.evaluate_files(result.synthetic_path, "test.jsonl", mode="probe")
"""

import importlib

__version__ = "0.1.0"

_PUBLIC = {
    "load_task": "wasp_jax.tasks",
    "read_labeled_jsonl": "wasp_jax.data",
    "WaspConfig": "wasp_jax.config",
    "base_config": "wasp_jax.config",
    "demo_config": "wasp_jax.config",
    "load_config": "wasp_jax.config",
    "replace": "wasp_jax.config",
    "apply_overrides": "wasp_jax.config",
    "run": "wasp_jax.pipeline.run.runner",
    "evaluate_files": "wasp_jax.stm.evaluate",
    "load_generator": "wasp_jax.models.generator",
    "load_embedder": "wasp_jax.models.embedder",
    "vote_and_noise": "wasp_jax.pipeline.stages.vote",
    "calibrate_sigma": "wasp_jax.privacy.accounting",
    "privacy_plan": "wasp_jax.pipeline.methods",
    "with_method": "wasp_jax.pipeline.methods",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'wasp_jax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])

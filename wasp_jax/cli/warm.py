"""Filling the model cache before a multi-process job starts.

orbax writes a checkpoint of process-local arrays only in a single-process program, while it
restores them in a job. So before a process joins a job, `warm_cache` converts every model
the run needs into this host's cache in a separate single-process Python (on CPU, holding a
lock on the cache folder so that the processes of one host convert each model once); in the
job, every process then only restores. Models already in the cache, and the tiny random
test models (never cached), cost nothing.

    python -m wasp_jax.cli.warm [--cache-dir DIR] plm:gemma3-270m encoder:all-minilm-l6-v2 stm:
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import subprocess
import sys
from collections.abc import Sequence

from wasp_jax.distributed import runtime as rt
from wasp_jax.models.cache import cache_root
from wasp_jax.models.registry import TINY_BERT, TINY_CONFIGS


def needs_warming(kind: str, spec: str) -> bool:
    """False for the tiny random models, which are built in code and never cached.

    Kind "stm" (any spec) is the small task model's encoder, whose name this process cannot
    read without starting a JAX backend (`STMConfig` checks its precision against it).
    """
    if kind == "stm":
        return True
    return spec not in TINY_CONFIGS and spec != TINY_BERT and kind in ("plm", "encoder")


def warm_cache(models: Sequence[tuple[str, str]], *, cache_dir: str | None = None) -> None:
    """Converts `models` ((kind "plm", "encoder" or "stm", spec) pairs) into the cache, in a
    single-process subprocess. Call it before ``jax.distributed.initialize``.

    Raises:
      RuntimeError: the conversion failed (its last output lines are in the message).
    """
    todo = [f"{kind}:{spec}" for kind, spec in models if needs_warming(kind, spec)]
    if not todo:
        return
    job = (rt.ENV_COORDINATOR, rt.ENV_NUM_PROCESSES, rt.ENV_PROCESS_ID)
    env = {k: v for k, v in os.environ.items() if k not in job}  # a single process
    env["JAX_PLATFORMS"] = "cpu"
    cmd = [sys.executable, "-m", "wasp_jax.cli.warm", *todo]
    if cache_dir:
        cmd += ["--cache-dir", str(cache_dir)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        tail = " | ".join((out.stderr or out.stdout).strip().splitlines()[-3:])
        raise RuntimeError(f"converting the models into the cache failed: {tail}")


@contextlib.contextmanager
def _locked(folder):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".warm.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="KIND:SPEC, KIND being plm, encoder or stm")
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args(argv)
    from wasp_jax.models.bert import load_bert
    from wasp_jax.models.loading import load_causal_lm

    with _locked(cache_root(args.cache_dir)):
        for item in args.models:
            kind, _, spec = item.partition(":")
            if kind == "plm":
                load_causal_lm(spec, cache_dir=args.cache_dir)
            else:
                if kind == "stm":
                    from wasp_jax.stm.classifier import STMConfig

                    spec = STMConfig().encoder
                if needs_warming("encoder", spec):
                    load_bert(spec, cache_dir=args.cache_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The workdir of a run: refuse one that holds another run, start one afresh with force.

A workdir holds one run: its resolved `config.json`, the outputs and `checkpoint/`.
Re-running the same config resumes it; a different config is refused (the keys under
`runtime.` do not change results and may differ) unless `force`, which discards that run.
The command line calls `check_workdir` before it loads any model; the runner calls
`prepare_workdir`, which checks again and writes `config.json`.
"""

from __future__ import annotations

import json
import pathlib
import shutil
from typing import Any

from wasp_jax import data as data_io
from wasp_jax.config import WaspConfig
from wasp_jax.errors import DataError

#: Config keys that do not change results; a workdir may be resumed with other values.
RESULT_NEUTRAL_PREFIXES = ("runtime.",)

#: The folder of the run state (`wasp_jax.pipeline.checkpoint`).
CHECKPOINT_DIR = "checkpoint"

#: Outputs a forced restart removes (with checkpoint/).
OUTPUTS = ("synthetic.jsonl", "privacy.json", "metrics.jsonl", "eval.json")


class WorkdirConfigError(DataError):
    """The workdir holds a run of a different config (CLI exit code 2; use --force)."""


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def config_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Keys of `new` (dotted) whose values differ in `old`; result-neutral keys are skipped."""
    a, b = _flatten(old), _flatten(new)
    # keys only in `old` are extra metadata the runner may store, not config fields
    return [k for k in sorted(b) if a.get(k) != b[k] and not k.startswith(RESULT_NEUTRAL_PREFIXES)]


def check_workdir(cfg: WaspConfig, workdir: str | pathlib.Path, *, force: bool) -> None:
    """Refuses a workdir that is a file, holds a run of a different config, or holds files
    under a run's output names without being a wasp-jax workdir (never cleared, even forced).

    Raises:
      WorkdirConfigError: unless `force` (then the run there is started afresh).
    """
    path = pathlib.Path(workdir)
    if path.exists() and not path.is_dir():
        raise WorkdirConfigError(f"workdir {str(workdir)!r} is a file; pass a folder")
    old_path = path / "config.json"
    if not old_path.is_file():
        # config.json is the first thing a run writes: without it, files under the names a
        # run writes (or --force removes) belong to someone else and are left alone.
        clash = sorted(n for n in (CHECKPOINT_DIR, *OUTPUTS) if (path / n).exists())
        if clash:
            raise WorkdirConfigError(
                f"workdir {str(workdir)!r} holds {', '.join(clash)} but no wasp-jax run "
                "(no config.json), so a run would overwrite or --force would delete files it "
                "did not write; choose another --workdir"
            )
        return
    if force:
        return
    try:
        old = json.loads(old_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        raise WorkdirConfigError(
            f"{old_path} is unreadable, so the run there cannot be resumed; "
            "pass --force to start it afresh or choose another --workdir"
        ) from None
    diff = config_diff(old, cfg.to_dict())
    if diff:
        shown = ", ".join(diff[:6]) + (" ..." if len(diff) > 6 else "")
        raise WorkdirConfigError(
            f"workdir {str(workdir)!r} holds a run with a different config (differs in: "
            f"{shown}); choose another --workdir, or pass --force to discard that run"
        )


def prepare_workdir(cfg: WaspConfig, workdir: pathlib.Path, *, force: bool) -> None:
    """Checks the workdir, clears it under `force`, and writes the resolved config.json."""
    check_workdir(cfg, workdir, force=force)
    if force:
        shutil.rmtree(workdir / CHECKPOINT_DIR, ignore_errors=True)
        for name in OUTPUTS:
            (workdir / name).unlink(missing_ok=True)
    workdir.mkdir(parents=True, exist_ok=True)
    data_io.atomic_write_text(workdir / "config.json", cfg.to_json() + "\n")

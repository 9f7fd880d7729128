"""The workdir of a run: its two parts, refusing one that holds another run, force.

A workdir holds one run in two folders:

* `release/` (`RELEASE_DIR`), the shareable part: the resolved `config.json`,
  `synthetic.jsonl`, `privacy.json`, `metrics.jsonl` (post-noise values and the API usage),
  `eval.json`, `eval_baselines.json`, `zero_shot_start.jsonl`, `datasheet.md`, `report.md`
  and `plots/`. Only this folder may be handed to others.
* `private/` (`PRIVATE_DIR`, mode 0700), what must never leave the machine: the marker
  (`MARKER`, the first thing a run writes), the run's noise secret (`wasp_jax.pipeline.run.secret`),
  `checkpoint/` (which holds the inputs' fingerprints), the embedding cache and, unless
  `generation.api_cache_dir` names another folder, the API response cache.

Re-running the same config resumes the run; a different config is refused (the keys under
`runtime.` do not change results and may differ) unless `force`, which removes both parts
(and so draws a new secret). A folder without the marker that holds files under a run's
names is someone else's: it is refused, forced or not, and nothing in it is touched. A
workdir of the older layout (the marker, config.json and outputs at its top level) is
refused with the fix, and `--force` clears it. A symlink among the names `--force` removes
is unlinked, never followed. The command line calls `check_workdir` before it loads any
model; the runner calls `prepare_workdir` under the workdir lock, which checks again, sweeps
the temp files of an interrupted write and writes the marker and `config.json`.
"""

from __future__ import annotations

import errno
import json
import pathlib
import shutil
import tempfile
from typing import Any

from wasp_jax import data as data_io
from wasp_jax.config import WaspConfig
from wasp_jax.config.api import RESULT_NEUTRAL as API_RESULT_NEUTRAL
from wasp_jax.errors import DataError
from wasp_jax.outputs import run_files

#: Config keys that do not change results; a workdir may be resumed with other values.
#: Config keys a resume may change: runtime settings, and the API caps, keys and cache folder
#: (a run stopped by an API cap resumes with a raised cap).
RESULT_NEUTRAL_PREFIXES = (
    "runtime.",
    "generation.api_cache_dir",
    *(f"api.{name}" for name in API_RESULT_NEUTRAL),
)

#: The shareable part of a workdir (see the module docstring).
RELEASE_DIR = run_files.RELEASE_DIR
#: The private part of a workdir, mode 0700.
PRIVATE_DIR = "private"

#: The folder of the run state (`wasp_jax.pipeline.run.checkpoint`), under private/.
CHECKPOINT_DIR = "checkpoint"

#: Outputs, under release/.
OUTPUTS = (
    "synthetic.jsonl",
    "privacy.json",
    "method.json",
    "metrics.jsonl",
    "eval.json",
    "datasheet.md",
    "report.md",
    "eval_baselines.json",
    "zero_shot_start.jsonl",
    "zero_shot_equal.jsonl",
)

#: Written first into a workdir (under private/): it marks the folder as a wasp-jax run's.
MARKER = ".wasp-jax-run"

#: What a run of the older layout kept at the workdir's top level (cleared by --force).
OLD_LAYOUT = (
    MARKER,
    "config.json",
    *OUTPUTS,
    CHECKPOINT_DIR,
    "plots",
    "embed_cache",
    "api_cache",
)

#: Bytes kept free beyond a run's estimate (state rewrites, the report's plots).
DISK_SLACK = 32 * 2**20


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
    # keys only in `old` are extra metadata the runner may store, not config fields; a key
    # only in `new` was added by a later version: at its default it changes nothing
    defaults = _flatten(_default_config())
    missing = object()
    return [
        k
        for k in sorted(b)
        if a.get(k, defaults.get(k, missing)) != b[k] and not k.startswith(RESULT_NEUTRAL_PREFIXES)
    ]


def _default_config() -> dict[str, Any]:
    from wasp_jax.config import WaspConfig

    return WaspConfig().to_dict()


def release_dir(workdir: str | pathlib.Path) -> pathlib.Path:
    """The shareable part of `workdir`."""
    return pathlib.Path(workdir) / RELEASE_DIR


def private_dir(workdir: str | pathlib.Path) -> pathlib.Path:
    """The private part of `workdir` (see `make_private_dir`)."""
    return pathlib.Path(workdir) / PRIVATE_DIR


def make_private_dir(workdir: str | pathlib.Path) -> pathlib.Path:
    """Creates the private part of `workdir` (if needed) with mode 0700, and keeps it so."""
    path = private_dir(workdir)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o777 != 0o700:
        path.chmod(0o700)
    return path


def _is_run_folder(path: pathlib.Path) -> bool:
    """Holds the marker of a run in this layout."""
    return (path / PRIVATE_DIR / MARKER).is_file()


def _is_old_run_folder(path: pathlib.Path) -> bool:
    """Holds a run of the older layout: the marker or a wasp-jax config.json at the top."""
    if (path / MARKER).is_file():
        return True
    try:
        old = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(old, dict) and {"method", "privacy", "generation"} <= old.keys()


def check_writable(workdir: str | pathlib.Path) -> None:
    """Refuses a workdir that cannot be created or written (probed with a temp file).

    Raises:
      WorkdirConfigError: naming the path, the reason and the fix.
    """
    path = pathlib.Path(workdir).absolute()
    probe = path
    while not probe.exists():
        if probe.is_symlink():
            raise WorkdirConfigError(f"workdir {str(workdir)!r}: {probe} is a broken symlink")
        probe = probe.parent
    if not probe.is_dir():
        what = "is a file" if probe == path else f"is under {probe}, which is a file"
        raise WorkdirConfigError(f"workdir {str(workdir)!r} {what}; pass a folder")
    try:
        with tempfile.TemporaryFile(dir=probe, prefix=".wasp-jax-probe."):
            pass
    except OSError as err:
        reason = err.strerror or str(err)
        raise WorkdirConfigError(
            f"workdir {str(workdir)!r} cannot be written ({probe}: {reason}); choose a "
            "writable --workdir"
        ) from None


def disk_estimate(cfg: WaspConfig) -> int:
    """Bytes a run of `cfg` writes into its workdir at most (a generous bound).

    Per sample: its text in synthetic.jsonl and in the state (and the temp copy of each
    while it is replaced), its embedding (up to 4 KiB, twice while replaced); per round, the
    released vote histograms.
    """
    g = cfg.generation
    n = g.budget
    text = 8 * (g.max_new_tokens or 512) + 256  # None: the task default, at most a few hundred
    per_round_votes = cfg.num_histograms * n * 4
    return n * (4 * text + 2 * 4096) + g.rounds * per_round_votes + DISK_SLACK


def check_free_space(cfg: WaspConfig, workdir: str | pathlib.Path) -> None:
    """Refuses a run whose `disk_estimate` exceeds the free space where the workdir is."""
    probe = pathlib.Path(workdir).absolute()
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    need = disk_estimate(cfg)
    if free < need:
        raise WorkdirConfigError(
            f"workdir {str(workdir)!r}: {free / 2**20:.0f} MiB free on its disk, a run of "
            f"this config (generation.budget={cfg.generation.budget}) needs about "
            f"{need / 2**20:.0f} MiB; free some space or choose another --workdir"
        )


def check_workdir(cfg: WaspConfig, workdir: str | pathlib.Path, *, force: bool) -> None:
    """Refuses a workdir that cannot be written, lacks the disk space of the run, holds a run
    of a different config or of the older layout, or holds files under a run's names without
    being a wasp-jax workdir (never cleared, even forced).

    Raises:
      WorkdirConfigError: a foreign folder, an unwritable path, too little disk, or (unless
        `force`, which starts the run there afresh) another config's run or an old layout.
    """
    path = pathlib.Path(workdir)
    check_writable(path)
    if _is_old_run_folder(path) and not _is_run_folder(path):
        if not force:
            raise WorkdirConfigError(
                f"workdir {str(workdir)!r} holds a run of an older wasp-jax layout (its "
                f"outputs at the top, not in {RELEASE_DIR}/ and {PRIVATE_DIR}/); choose a new "
                "--workdir, or pass --force to discard that run"
            )
        check_free_space(cfg, path)
        return
    if not _is_run_folder(path):
        # The marker is the first thing a run writes: without it, files under the names a run
        # writes (or --force removes) belong to someone else and are left alone.
        names = (RELEASE_DIR, PRIVATE_DIR, *OLD_LAYOUT)
        clash = sorted(n for n in names if (path / n).exists() or (path / n).is_symlink())
        if clash:
            raise WorkdirConfigError(
                f"workdir {str(workdir)!r} holds {', '.join(clash)} but no wasp-jax run "
                f"(no {PRIVATE_DIR}/{MARKER} marker), so a run would mix its files with, or "
                "--force would delete, files it did not write; choose another --workdir"
            )
        check_free_space(cfg, path)
        return
    check_free_space(cfg, path)
    old_path = release_dir(path) / "config.json"
    if force or not old_path.exists():
        return
    try:
        old = json.loads(old_path.read_text(encoding="utf-8"))
    except (ValueError, OSError):
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


def _remove(path: pathlib.Path) -> None:
    """Removes a file or folder of the run; a symlink is unlinked, its target left alone."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        shutil.rmtree(path)  # does not follow symlinks inside


def prepare_workdir(cfg: WaspConfig, workdir: pathlib.Path, *, force: bool) -> None:
    """Checks the workdir, clears it under `force` (both parts, or an old layout's files),
    creates `private/` (0700) and `release/`, sweeps temp files left by an interrupted write,
    and writes the marker and the resolved config.json (only when it changes, so a finished
    run in a read-only folder can still be looked at)."""
    check_workdir(cfg, workdir, force=force)
    if force:
        old = _is_old_run_folder(workdir) and not _is_run_folder(workdir)
        for name in (*OLD_LAYOUT,) if old else (RELEASE_DIR, PRIVATE_DIR):
            _remove(workdir / name)
    private, release = make_private_dir(workdir), release_dir(workdir)
    release.mkdir(exist_ok=True)
    for folder in (release, release / "plots", private, private / CHECKPOINT_DIR):
        data_io.sweep_temp_files(folder)
    if not (private / MARKER).is_file():
        data_io.atomic_write_json(private / MARKER, {"tool": "wasp-jax", "format": 2})
    text = cfg.to_json() + "\n"
    config_path = release / "config.json"
    try:
        same = config_path.read_text(encoding="utf-8") == text
    except (OSError, UnicodeDecodeError):
        same = False
    if not same:
        data_io.atomic_write_text(config_path, text)


def describe_os_error(err: OSError, what: str) -> str:
    """One line for an OSError a run hit while writing `what`: the problem and the fix."""
    where = f" ({err.filename})" if err.filename else ""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"the disk is full{where} while writing {what}; free some space and rerun the same "
            "command: the run resumes from its last finished stage"
        )
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{what} cannot be written{where}: {err.strerror}; choose a writable --workdir"
    return f"{what}: {err.strerror or err}{where}; check the path and rerun"

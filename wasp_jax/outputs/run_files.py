"""Reading a finished run's files, and the markdown helpers the report and datasheet share.

Only the shareable files the runner writes into `<workdir>/release/` are read (`config.json`,
`privacy.json`, `metrics.jsonl`, `synthetic.jsonl`, `eval.json`, `eval_baselines.json`):
public inputs, post-noise values and synthetic data. A copy of that folder alone is enough.
"""

from __future__ import annotations

import json
import math
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

from wasp_jax import data as data_io
from wasp_jax.data import DataError

#: The shareable part of a workdir: everything in it may be handed to others.
RELEASE_DIR = "release"

# ------------------------------------------------------------------------------ loading


def field(mapping: Mapping[str, Any] | None, *names: str, default: Any = None) -> Any:
    """First present key of `names` (tolerates naming variants of the runner's files)."""
    for name in names:
        if mapping and name in mapping and mapping[name] is not None:
            return mapping[name]
    return default


def release_folder(path: str | pathlib.Path) -> pathlib.Path:
    """The folder of a run's shareable files: `<path>/release/` for a workdir, else `path`
    itself (a copy of a release folder)."""
    path = pathlib.Path(path)
    return path / RELEASE_DIR if (path / RELEASE_DIR).is_dir() else path


def load_run(workdir: str | pathlib.Path) -> dict[str, Any]:
    """Reads a run's shareable files, from a workdir or from a copy of its release folder.

    Returns:
      {"config", "privacy", "metrics", "synthetic", "eval", "baselines", "method"}; `eval`
      and `baselines` (eval_baselines.json) are None when absent; `method` is the method's
      description (method.json, written by the runner; {} for a run that has none).

    Raises:
      DataError: the folder or one of its required files is missing or malformed.
    """
    if not pathlib.Path(workdir).is_dir():
        raise DataError(f"workdir {str(workdir)!r} does not exist; pass the --workdir of a run")
    workdir = release_folder(workdir)
    for name in ("config.json", "privacy.json", "metrics.jsonl", "synthetic.jsonl"):
        if not (workdir / name).is_file():
            raise DataError(
                f"{str(workdir)!r} has no {name}; it is not a finished run "
                "(run `wasp-jax run` on it first, which resumes an interrupted run)"
            )
    run = {
        "config": _read_json(workdir / "config.json"),
        "privacy": _read_json(workdir / "privacy.json"),
        "metrics": data_io.read_jsonl(workdir / "metrics.jsonl", what="metrics"),
        "synthetic": data_io.read_jsonl(workdir / "synthetic.jsonl", what="synthetic"),
        "eval": None,
    }
    if (workdir / "eval.json").is_file():
        run["eval"] = _read_json(workdir / "eval.json")
    run["method"] = {}
    if (workdir / "method.json").is_file():
        run["method"] = _read_json(workdir / "method.json")
    run["baselines"] = None
    if (workdir / "eval_baselines.json").is_file():
        run["baselines"] = _read_json(workdir / "eval_baselines.json")
    return run


def task_title(cfg: Mapping[str, Any]) -> str:
    """The task's name for titles: a built-in name as is, a task file by its spec's name."""
    task = str(cfg.get("task", "?"))
    if not task.endswith(".json"):
        return task
    try:
        spec = json.loads(pathlib.Path(task).read_text(encoding="utf-8"))
        return str(spec.get("name") or pathlib.Path(task).stem)
    except (OSError, ValueError, AttributeError):
        return pathlib.Path(task).stem


def mean_std(score: Mapping[str, Any] | None, *, percent: bool = True) -> str:
    """'81.2 ± 0.4' (percent, mean ± std over seeds) for people; '81.2' for a score without
    a std (one noise draw, e.g. a DP classifier's); '-' when absent."""
    if not isinstance(score, Mapping) or score.get("mean") is None:
        return "-"
    scale = 100.0 if percent else 1.0
    if "std" not in score:
        return f"{scale * float(score['mean']):.1f}"
    return f"{scale * float(score['mean']):.1f} ± {scale * float(score.get('std') or 0.0):.1f}"


def _read_json(path: pathlib.Path) -> Any:

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{str(path)!r} is not valid JSON ({err}); rerun the pipeline") from None


def label_names(run: Mapping[str, Any]) -> list[str]:
    """Class names by label id, from synthetic.jsonl (and metrics' class counts)."""
    names: dict[int, str] = {}
    for row in run["synthetic"]:
        names.setdefault(int(row["label"]), str(row.get("label_name", row["label"])))
    for m in run["metrics"]:
        counts = field(m, "class_counts")
        if isinstance(counts, Mapping):
            for i, key in enumerate(counts):
                names.setdefault(i, str(key))
        elif isinstance(counts, Sequence):
            for i in range(len(counts)):
                names.setdefault(i, str(i))
    size = max(names) + 1 if names else 0
    return [names.get(i, str(i)) for i in range(size)]


def counts(rows: Sequence[Mapping[str, Any]], key: str) -> dict[Any, int]:
    """Number of rows per value of `key`."""
    out: dict[Any, int] = {}
    for row in rows:
        out[row.get(key)] = out.get(row.get(key), 0) + 1
    return out


# ------------------------------------------------------------------------------ markdown


def fmt(value: Any) -> str:
    """A compact cell text: 4 significant digits, lists joined, dicts as k=v."""
    if isinstance(value, float):
        if math.isinf(value):
            return "inf"
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ", ".join(fmt(v) for v in value)
    if isinstance(value, Mapping):
        return "; ".join(f"{k}={fmt(v)}" for k, v in value.items())
    return str(value)


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table (cells through `fmt`)."""
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"

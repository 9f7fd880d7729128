"""PNG plots for `report.md` (matplotlib, Agg backend, imported lazily; atomic writes).

Every function takes values a run has already written (post-noise metrics, synthetic class
counts, evaluation scores) and a target path; it returns the path, or None when the run has
nothing to plot (e.g. no PLM weights for a zero-shot method).

Example:
    plots.plm_weights(metrics, workdir / "plots" / "plm_weights.png")
"""

from __future__ import annotations

import io
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

from wasp_jax import data as data_io


def _get(mapping: Mapping[str, Any] | None, *names: str, default: Any = None) -> Any:
    for name in names:
        if mapping and name in mapping and mapping[name] is not None:
            return mapping[name]
    return default


def _figure(width: float, height: float = 3.5):
    # a bare Figure (no pyplot) renders with Agg and leaves the caller's backend alone
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    return fig, fig.subplots()


def _save_png(fig, path: pathlib.Path) -> pathlib.Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return data_io.atomic_write_bytes(path, buf.getvalue())


def plm_weights(metrics: Sequence[Mapping], path: pathlib.Path) -> pathlib.Path | None:
    """Line plot of each PLM's weight per round (metrics.jsonl `plm_weights`)."""
    rounds = [(m.get("round"), m) for m in metrics if _get(m, "plm_weights") is not None]
    if not rounds:
        return None
    fig, ax = _figure(6)
    names = _get(rounds[0][1], "plm_names", default=[])
    for k in range(len(rounds[0][1]["plm_weights"])):
        label = names[k] if k < len(names) else f"PLM {k}"
        ax.plot([r for r, _ in rounds], [m["plm_weights"][k] for _, m in rounds], "o-", label=label)
    ax.set(xlabel="round", ylabel="PLM weight", title="PLM weights per round")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8)
    return _save_png(fig, path)


def class_balance(
    names: Sequence[str], by_class: Mapping[int, int], path: pathlib.Path
) -> pathlib.Path:
    """Bar plot of synthetic samples per class (`by_class`: label id -> count)."""
    return _save_png(class_balance_figure(names, by_class)[0], path)


def class_balance_figure(names: Sequence[str], by_class: Mapping[int, int]):
    """(figure, axes) of `class_balance`: one horizontal bar per class, first class on top,
    long names wrapped, the height growing with the classes, so that many classes or long
    names stay readable."""
    import textwrap

    labels = [textwrap.fill(f"{i}: {n}", 28) for i, n in enumerate(names)]
    lines = sum(label.count("\n") + 1 for label in labels)
    fig, ax = _figure(6.5, max(2.5, 0.28 * lines + 0.25 * len(names) + 1.2))
    ys = range(len(names))
    ax.barh(ys, [by_class.get(i, 0) for i in ys])
    ax.set_yticks(ys, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel="synthetic samples", title="Class balance of synthetic.jsonl")
    return fig, ax


def stage_seconds(metrics: Sequence[Mapping], path: pathlib.Path) -> pathlib.Path | None:
    """Stacked bars of seconds per stage and round (metrics.jsonl `stage_seconds`)."""
    rows = [(m.get("round"), _get(m, "stage_seconds")) for m in metrics]
    rows = [(r, s) for r, s in rows if isinstance(s, Mapping) and s]
    if not rows:
        return None
    stages = list(dict.fromkeys(k for _, s in rows for k in s))
    fig, ax = _figure(6)
    bottom = [0.0] * len(rows)
    for stage in stages:
        vals = [float(s.get(stage, 0.0)) for _, s in rows]
        ax.bar([str(r) for r, _ in rows], vals, bottom=bottom, label=stage)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set(xlabel="round", ylabel="seconds", title="Stage timings")
    ax.legend(fontsize=7)
    return _save_png(fig, path)


def downstream(
    evals: Mapping[str, Any], path: pathlib.Path, *, baselines: Mapping[str, Any] | None = None
) -> pathlib.Path | None:
    """Grouped bars per metric (accuracy, macro-F1): the synthetic set and each baseline,
    the mean over seeds with the std as error bars."""
    sets = {"synthetic": evals, **{k: v for k, v in (baselines or {}).items()}}
    keys = [k for k in ("accuracy", "macro_f1") if isinstance(evals.get(k), Mapping)]
    if not keys:
        return None
    fig, ax = _figure(4 + 1.2 * len(sets))
    width = 0.8 / len(sets)
    for i, (name, ev) in enumerate(sets.items()):
        means = [_get(ev, k, default={}).get("mean", 0) for k in keys]
        stds = [_get(ev, k, default={}).get("std", 0) for k in keys]
        xs = [j + (i - (len(sets) - 1) / 2) * width for j in range(len(keys))]
        ax.bar(xs, means, width, yerr=stds, label=name, capsize=3)
    ax.set_xticks(range(len(keys)), keys)
    ax.set(ylim=(0, 1), ylabel="score on real test data", title="Downstream (STM), mean ± std")
    ax.legend(fontsize=8)
    return _save_png(fig, path)

"""The privacy audit's plot: score histograms of each audited release, and bounds vs claims.

One panel per (release kind, mechanism): the histograms of the held-out scores on D and on D'
with the chosen threshold; the last panel: each lower bound on epsilon next to its claim.

Example::

    audit_plot(result, scores, out / "audit.png")
"""

from __future__ import annotations

import io
import math
import pathlib
from collections.abc import Mapping

import numpy as np

from wasp_jax import data as data_io


def audit_plot(result: Mapping, scores: Mapping, path: pathlib.Path) -> pathlib.Path:
    """Writes the PNG (atomically) and returns its path.

    Args:
      result: ``wasp_jax.audit.runner.audit``'s result (its "releases" rows).
      scores: {(kind, mechanism): (scores on D, scores on D', bound)} from the same call.
    """
    from matplotlib.figure import Figure

    rows = list(result["releases"])
    panels = len(rows) + 1
    cols = min(3, panels)
    lines = math.ceil(panels / cols)
    fig = Figure(figsize=(4.2 * cols, 3.2 * lines))
    axes = fig.subplots(lines, cols, squeeze=False).ravel()
    for ax, row in zip(axes, rows, strict=False):
        on_d, on_dp, bound = scores[(row["kind"], row["mechanism"])]
        held_d, held_dp = on_d[bound.selected_on :], on_dp[bound.selected_on :]
        both = np.concatenate([held_d, held_dp])
        bins = np.histogram_bin_edges(both, bins=min(60, max(5, np.unique(both).size)))
        ax.hist(held_d, bins=bins, alpha=0.5, label="D (canary)")
        ax.hist(held_dp, bins=bins, alpha=0.5, label="D'")
        ax.axvline(bound.threshold, color="k", lw=1, ls="--")
        ax.set_title(
            f"{row['kind']} / {row['mechanism']}\n"
            f"eps_lb {row['eps_lb']:.2f}, claimed {row['epsilon_claimed']:.2f}",
            fontsize=9,
        )
        ax.set_xlabel("score", fontsize=8)
        ax.legend(fontsize=7)
    ax = axes[len(rows)]
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r["eps_lb"] for r in rows], 0.4, label="lower bound")
    ax.bar(x + 0.2, [r["epsilon_claimed"] for r in rows], 0.4, label="claimed")
    labels = [f"{r['kind']}\n{r['mechanism']}" for r in rows]
    ax.set_xticks(x, labels, fontsize=6, rotation=45, ha="right")
    ax.set_ylabel("epsilon", fontsize=8)
    ax.set_title(f"{result['confidence']:.0%} lower bounds vs claims", fontsize=9)
    ax.legend(fontsize=7)
    for ax in axes[panels:]:
        ax.set_visible(False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return data_io.atomic_write_bytes(path, buf.getvalue())

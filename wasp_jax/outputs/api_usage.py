"""The API usage table of the report and the datasheet: per API PLM and round, the requests
sent, the samples answered from the response cache, failed samples, tokens and cost (read
from the ``api_usage`` entries of `metrics.jsonl`; absent when no PLM is an API PLM)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from wasp_jax.outputs.run_files import md_table

HEADER = (
    "round",
    "API PLM",
    "requests",
    "cache hits",
    "failed",
    "prompt tokens",
    "completion tokens",
    "cost (USD)",
)


def usage_rows(metrics: Sequence[Mapping[str, Any]]) -> list[tuple]:
    """One row per (round, API PLM), then one total row per API PLM."""
    rows, totals = [], {}
    for m in metrics:
        for plm, u in sorted((m.get("api_usage") or {}).items()):
            vals = [u.get(k, 0) for k in ("requests", "cache_hits", "failed")]
            vals += [u.get("prompt_tokens", 0), u.get("completion_tokens", 0)]
            cost = float(u.get("cost_usd", 0.0))
            rows.append((m.get("round", "-"), plm, *vals, f"{cost:.4f}"))
            t = totals.setdefault(plm, [0, 0, 0, 0, 0, 0.0])
            for i, v in enumerate([*vals, cost]):
                t[i] += v
    for plm, t in sorted(totals.items()):
        rows.append(("all", plm, *t[:5], f"{t[5]:.4f}"))
    return rows


def usage_section(metrics: Sequence[Mapping[str, Any]]) -> list[str]:
    """Markdown parts of the section, or [] without API PLMs."""
    rows = usage_rows(metrics)
    if not rows:
        return []
    return [
        "## API usage (requests, response cache, tokens, cost)\n",
        md_table(HEADER, rows),
        "\nCache hits are samples read from the response cache: no request, no cost. The cost "
        "uses the prices of `api.prices` (0 where none is configured); tokens are as the "
        "server reported them.\n",
    ]

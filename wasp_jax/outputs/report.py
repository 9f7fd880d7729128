"""Human-readable outputs of a run: `datasheet.md`, `report.md` and its PNG plots.

Both documents are rebuilt from the shareable files the runner leaves in `<workdir>/release/`
(`config.json`, `privacy.json`, `metrics.jsonl`, `synthetic.jsonl` and, once evaluated,
`eval.json`), so a copy of that folder alone is enough. Those files hold only public inputs,
post-noise values and synthetic data, and this module reads nothing else: never the
workdir's `private/` part, nor the private data file (it only names it, as configured). All
files are written atomically into the release folder; plots go to its `plots/`
(`wasp_jax.outputs.plots`).
The datasheet is `wasp_jax.outputs.datasheet`; both read the run through
`wasp_jax.outputs.run_files`.

Example:
    from wasp_jax.outputs import datasheet, report
    datasheet.write_datasheet("runs/demo")   # -> runs/demo/release/datasheet.md
    report.write_report("runs/demo")         # -> runs/demo/release/report.md, plots/*.png
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

from wasp_jax import data as data_io
from wasp_jax.outputs import plots as plots_lib
from wasp_jax.outputs.api_usage import usage_section
from wasp_jax.outputs.comparison import (  # noqa: F401  (re-exported for callers)
    _classifier_section,
    _comparison_header,
    _comparison_note,
    _comparison_rows,
    _eval_context,
    beyond_spread,
    spread_conclusion,
)
from wasp_jax.outputs.run_files import (
    counts,
    field,
    fmt,
    label_names,
    load_run,
    md_table,
    release_folder,
    task_title,
)
from wasp_jax.privacy.noise_source import SEEDED_NOTE

# ------------------------------------------------------------------------------ report


def write_report(workdir: str | pathlib.Path) -> pathlib.Path:
    """Writes `report.md` and its plots (`plots/`) into the release folder of `workdir`
    (a workdir, or a copy of its release folder).

    Returns:
      The report's path.

    Raises:
      DataError: the workdir is not a finished run.
    """
    run = load_run(workdir)
    workdir = release_folder(workdir)
    metrics, syn, names = run["metrics"], run["synthetic"], label_names(run)
    made = _plots(run, names, workdir / "plots")
    parts = _head(run)
    summary_rows = _vote_summary_rows(metrics, names)
    if summary_rows:
        parts += [
            "## Noisy votes per class (post-noise)\n",
            md_table(
                ("round", "histogram", "class", "candidates", "mean", "std", "max"), summary_rows
            ),
        ]
    withheld = next(
        (m["vote_summary_withheld"] for m in metrics if "vote_summary_withheld" in m), None
    )
    if withheld:
        parts += ["## Votes per class\n", f"Not shown: {withheld}.\n"]
    parts += _shortfalls(metrics)
    parts += usage_section(metrics)
    if run["eval"]:
        parts += [
            "## Was it worth it? Downstream evaluation\n",
            _eval_context(run["eval"]),
            md_table(_comparison_header(run), _comparison_rows(run)),
            *_classifier_section(run),
            _comparison_note(run),
        ]
    selected_rows = _selected_rows(metrics, syn, names)
    if selected_rows:
        parts += [
            "## Top noisy-vote picks used in the prompts (synthetic texts)\n",
            md_table(("round", "class", "top good (nearest)", "top bad (farthest)"), selected_rows),
        ]
    for title, path in made.items():
        if path is not None:
            parts.append(f"## {title}\n\n![{title}](plots/{path.name})\n")
    parts += _examples(syn, names)
    return data_io.atomic_write_text(workdir / "report.md", "\n".join(parts))


def _plots(run: Mapping[str, Any], names, plots: pathlib.Path) -> dict[str, Any]:
    """The report's plots, by title (a plot that has nothing to show is None)."""
    metrics = run["metrics"]
    by_class = counts(run["synthetic"], "label")
    made = {
        "PLM weights per round": plots_lib.plm_weights(metrics, plots / "plm_weights.png"),
        "Class balance": plots_lib.class_balance(names, by_class, plots / "class_balance.png"),
        "Stage timings": plots_lib.stage_seconds(metrics, plots / "stage_seconds.png"),
    }
    if run["eval"]:
        made["Downstream accuracy"] = plots_lib.downstream(
            run["eval"], plots / "eval.png", baselines=run.get("baselines")
        )
    return made


def _not_private_warning(ledger: Mapping[str, Any]) -> list[str]:
    if field(ledger, "noise") == "seeded" and field(ledger, "sigma") != 0:
        return [
            f"**This data is NOT differentially private ({SEEDED_NOTE})**: the run had "
            "privacy.noise = 'seeded', so anyone who knows its seed can subtract the noise.\n"
        ]
    if field(ledger, "private", default=True) is False or field(ledger, "sigma") == 0:
        return [
            "**This data is NOT differentially private**: the run had epsilon = inf, so the "
            "votes that chose its examples and PLM weights got no noise.\n"
        ]
    return []


def _head(run: Mapping[str, Any]) -> list[str]:
    """Title, the privacy headline and the per-round table."""
    cfg, ledger, metrics, syn = run["config"], run["privacy"], run["metrics"], run["synthetic"]
    total_s = sum(
        float(v) for m in metrics for v in (field(m, "stage_seconds", default={}) or {}).values()
    )
    return [
        f"# Run report: `{task_title(cfg)}`, method `{cfg.get('method', '?')}`\n",
        md_table(
            ("epsilon", "delta", "sigma", "rounds", "synthetic samples", "stage seconds (sum)"),
            [
                (
                    field(ledger, "epsilon", default="-"),
                    field(ledger, "delta", default="-"),
                    field(ledger, "sigma", default="-"),
                    field(ledger, "rounds", "num_rounds", default="-"),
                    len(syn),
                    round(total_s, 1),
                )
            ],
        ),
        *_not_private_warning(ledger),
        "Only public inputs, post-noise values and synthetic data appear below.\n",
        "## Per round\n",
        md_table(
            ("round", "PLMs", "weights", "budgets", "class counts", "samples", "filtered out"),
            [
                (
                    m.get("round", "-"),
                    field(m, "plm_names", default="-"),
                    field(m, "plm_weights", default="-"),
                    field(m, "plm_budgets", default="-"),
                    field(m, "class_counts", default="-"),
                    field(m, "n_synthetic", default="-"),
                    _filtered(m.get("filtered")),
                )
                for m in metrics
            ],
        ),
    ]


def _vote_summary_rows(metrics, names) -> list[tuple]:
    """Rows of the runner's `noisy_vote_summary` ({hist: [per-class {n, mean, std, max}]})."""
    rows = []
    for m in metrics:
        summary = field(m, "noisy_vote_summary")
        if not isinstance(summary, Mapping):
            continue
        for hist, per_class in summary.items():
            flat = isinstance(per_class, Mapping) or not all(
                isinstance(x, Mapping) for x in per_class
            )
            if flat:  # an unknown layout (e.g. WASP+'s noisy vectors): show it flat
                rows.append((m.get("round"), hist, "-", "-", fmt(per_class), "-", "-"))
                continue
            for c, stats in enumerate(per_class):
                name = names[c] if c < len(names) else str(c)
                rows.append(
                    (m.get("round"), hist, name)
                    + tuple(stats.get(k, "-") for k in ("n", "mean", "std", "max"))
                )
    return rows


def _filtered(counts: Any) -> str:
    """Per-reason counts of dropped continuations ('-' when nothing was dropped)."""
    if not isinstance(counts, Mapping):
        return "-"
    shown = [f"{k.replace('_', ' ')} {n}" for k, n in counts.items() if n]
    return ", ".join(shown) or "-"


#: eval_baselines.json's rows of the DP classifiers (`eval.dp_classifiers`), shown apart.


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _selected_rows(metrics, syn, names) -> list[tuple]:
    """The first good and bad pick per class and round (`selected` indexes synthetic.jsonl)."""
    rows = []
    for m in metrics:
        sel = field(m, "selected")
        if not isinstance(sel, Mapping):
            continue
        good, bad = sel.get("good") or [], sel.get("bad") or []
        for c, name in enumerate(names):
            picks = []
            for lists in (good, bad):
                idx = lists[c] if c < len(lists) and lists[c] else None
                ok = idx is not None and 0 <= int(idx[0]) < len(syn)
                picks.append(_short(syn[int(idx[0])]["text"]) if ok else "-")
            rows.append((m.get("round"), name, *picks))
    return rows


def _round_of(row: Mapping[str, Any]) -> int:
    """The round of a synthetic row (-1 when it has none that reads as a number)."""
    try:
        return int(row.get("round", -1))
    except (TypeError, ValueError):
        return -1


def _examples(
    syn: Sequence[Mapping[str, Any]], names: Sequence[str], per_class: int = 2
) -> list[str]:
    """The report's example section: `per_class` synthetic texts per class from the last round.

    The last round is the highest round in `synthetic.jsonl` (round 0 is the zero-shot start,
    so the first rows of the file say little about what the run learned). A class with no text
    in that round shows its texts from its own latest round instead, and a line under the
    heading says so.
    Within that round the rows are taken evenly spread over the class's rows in file order
    (first and last for two), so the pick is deterministic and spans the PLMs.
    """
    if not syn:
        return ["## Examples (synthetic)\n", "(no samples)\n"]
    last = max(_round_of(row) for row in syn)
    lines, fallback = [], []
    for c, name in enumerate(names):
        rows = [row for row in syn if int(row["label"]) == c]
        if not rows:
            continue
        latest = max(_round_of(row) for row in rows)
        if latest != last:
            fallback.append(f"{name} (round {latest})")
        rows = [row for row in rows if _round_of(row) == latest]
        k = min(per_class, len(rows))
        picks = sorted({round(i * (len(rows) - 1) / max(k - 1, 1)) for i in range(k)})
        for i in picks:
            row = rows[i]
            text = _short(row["text"], 240)
            lines.append(
                f"- **{name}** ({row.get('plm', '?')}, round {row.get('round', '?')}): {text}"
            )
    where = f"round {last}: the last" if last >= 0 else "round unknown"
    out = [f"## Examples (synthetic, {where})\n"]
    if fallback:
        out.append(
            "Classes with no text in that round show their latest round instead: "
            + ", ".join(fallback)
            + ".\n"
        )
    out.append("\n".join(lines) + "\n" if lines else "(no samples)\n")
    return out


def _shortfalls(metrics) -> list[str]:
    """Rounds that fell short: rows under the budget, prompts with fewer than S examples."""
    rows = []
    for m in metrics:
        short = m.get("short_examples") or {}
        told = "; ".join(
            f"{kind}: " + ", ".join(f"{n} {k}" for n, k in v.items()) for kind, v in short.items()
        )
        if m.get("shortfall") or told:
            rows.append((m.get("round"), m.get("shortfall", 0), told or "-"))
    if not rows:
        return []
    return [
        "## Shortfalls\n",
        "Fewer rows than the budget, or contrastive prompts with fewer than S examples "
        "(raise generation.budget, generation.max_new_tokens or lower selection.s):\n",
        md_table(("round", "rows short", "prompts short of S examples (class examples)"), rows),
    ]

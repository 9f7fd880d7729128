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
from wasp_jax.outputs.run_files import (
    counts,
    field,
    fmt,
    label_names,
    load_run,
    md_table,
    mean_std,
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
CLASSIFIER_KIND = "dp_classifier"


def _baselines(run: Mapping[str, Any], *, classifiers: bool) -> dict[str, Mapping[str, Any]]:
    """The baselines that are (or are not) DP classifiers, in file order."""
    return {
        name: b
        for name, b in (run.get("baselines") or {}).items()
        if isinstance(b, Mapping) and (b.get("kind") == CLASSIFIER_KIND) == classifiers
    }


def _draws(entry: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """An eval entry's subsample-draw summary, or None (older runs have none)."""
    sub = entry.get("subsample") if isinstance(entry, Mapping) else None
    return sub if isinstance(sub, Mapping) and isinstance(sub.get("accuracy"), Mapping) else None


def _comparison_header(run: Mapping[str, Any]) -> tuple[str, ...]:
    head = ("trained on", "samples", "accuracy % (mean ± std)", "macro-F1 % (mean ± std)", "DP")
    if _draws(run["eval"]):
        head += ("accuracy % over subsample draws (mean ± std)",)
    return head


def _comparison_rows(run: Mapping[str, Any]) -> list[tuple]:
    """The synthetic set, then its baselines, on the same test data and seeds (the DP
    classifiers have a table of their own, `_classifier_section`)."""
    ev = run["eval"]
    train = ev.get("train") if isinstance(ev.get("train"), Mapping) else {}
    n_syn = train.get("num_used", train.get("num_examples", len(run["synthetic"])))
    draws = _draws(ev) is not None
    entries = [("synthetic set (this run)", n_syn, ev, "yes")]
    for name, b in _baselines(run, classifiers=False).items():
        entries.append((name, b.get("n_train", "-"), b, "yes" if b.get("dp") else "**no**"))
    rows = []
    for name, n, entry, dp in entries:
        row = (name, n, mean_std(entry.get("accuracy")), mean_std(entry.get("macro_f1")), dp)
        if draws:
            sub = _draws(entry)
            row += (mean_std(sub["accuracy"]) if sub else "-",)
        rows.append(row)
    return rows


def _classifier_section(run: Mapping[str, Any]) -> list[str]:
    """What the same budget buys as a classifier: the DP classifiers' scores, with their
    epsilon spent in addition to the run's."""
    found = _baselines(run, classifiers=True)
    if not found:
        return []
    total = field(run.get("privacy"), "epsilon_total")
    text = (
        "**What the same budget buys as a classifier.** DP classifiers trained on the private "
        "data itself at the run's (epsilon, delta) and adjacency, scored on the same test rows "
        "(one noise draw each, so no spread). Their epsilon is spent in addition to the run's"
    )
    if total is not None:
        text += f": the run's outputs together are epsilon = {fmt(total)}"
    text += " (privacy.json's epsilon_total, basic composition).\n"
    rows = [
        (
            name,
            mean_std(b.get("accuracy")),
            mean_std(b.get("macro_f1")),
            b.get("epsilon", "-"),
            b.get("delta", "-"),
            "yes" if b.get("dp") else "**no**",
        )
        for name, b in found.items()
    ]
    head = ("classifier", "accuracy %", "macro-F1 %", "epsilon", "delta", "DP")
    return [text, md_table(head, rows)]


def beyond_spread(gain: float, std_syn: float, std_base: float) -> bool:
    """Whether a difference of `gain` exceeds the spread: |gain| > std_syn + std_base (one
    rule for the report and the experiments' tables)."""
    return abs(gain) > std_syn + std_base


def spread_conclusion(gain: float, std_syn: float, std_base: float, base: str) -> str:
    """The verdict on a difference of `gain` points against the spread over subsample draws.

    The rule: the difference is beyond the spread iff |gain| > std_syn + std_base, the sum
    of the two sets' sample stds over their draws (in points); otherwise it is within the
    spread, not a measurable change. `base` names the baseline's column ("zero-shot").
    """
    text = (
        f"; the spread over subsample draws is ±{std_syn:.1f} (synthetic) and ±{std_base:.1f} "
        f"({base}), so the difference is "
    )
    if beyond_spread(gain, std_syn, std_base):
        text += "beyond the spread (it exceeds their sum)"
        return text + ("" if gain > 0 else ": a measurable loss")
    what = "gain" if gain >= 0 else "loss"
    return text + f"within the spread (at most their sum): not a measurable {what}"


def _comparison_note(run: Mapping[str, Any]) -> str:
    """The section's conclusion: what the baselines are, the gain over the zero-shot set
    (judged against the spread over subsample draws when both sets have at least two, see
    `spread_conclusion`), the best DP classifier, and OnlyPrivate."""
    baselines = run.get("baselines") or {}
    equal = baselines.get("zero-shot (equal size)")
    base = equal if isinstance(equal, Mapping) else baselines.get("zero-shot start")
    text = (
        "The zero-shot start is this run's round-0 samples: the same PLMs before any private "
        "data was used."
    )
    if isinstance(equal, Mapping):
        text += (
            " The equal-size zero-shot set adds zero-shot samples of the same PLMs until it is "
            "as large as the synthetic set (no privacy spent), so a difference is not one of size."
        )
    syn = run["eval"].get("accuracy")
    if isinstance(base, Mapping) and isinstance(syn, Mapping):
        gain = 100 * (syn["mean"] - base["accuracy"]["mean"])
        against = "the equal-size zero-shot set" if base is equal else "the zero-shot start"
        text += f" The private data changed accuracy by {gain:+.1f} points over {against}"
        d_syn, d_base = _draws(run["eval"]), _draws(base)
        if d_syn and d_base and min(d_syn.get("draws", 0), d_base.get("draws", 0)) >= 2:
            std = [100 * float(d["accuracy"].get("std") or 0.0) for d in (d_syn, d_base)]
            text += spread_conclusion(gain, std[0], std[1], "zero-shot")
        text += "."
    text += _classifier_sentence(run)
    if "OnlyPrivate (not DP)" in baselines:
        text += (
            " OnlyPrivate trains on the private texts themselves; its score is not "
            "differentially private."
        )
    return text + "\n"


def _classifier_sentence(run: Mapping[str, Any]) -> str:
    """The synthetic set against the best DP classifier at the same epsilon ('' without)."""
    syn = run["eval"].get("accuracy")
    scored = {
        name: float(b["accuracy"]["mean"])
        for name, b in _baselines(run, classifiers=True).items()
        if isinstance(b.get("accuracy"), Mapping) and b["accuracy"].get("mean") is not None
    }
    if not scored or not isinstance(syn, Mapping):
        return ""
    name = max(scored, key=scored.get)
    diff = 100 * (scored[name] - float(syn["mean"]))
    where = f"{abs(diff):.1f} points {'above' if diff > 0 else 'below'}" if diff else "the same as"
    return (
        f" The {name} at the same epsilon scores {100 * scored[name]:.1f} %, {where} the "
        "synthetic set; its epsilon is spent in addition to the run's."
    )


def _eval_context(evals: Mapping[str, Any]) -> str:
    """One sentence on what was trained and tested (the evaluation's own provenance)."""
    test = evals.get("test") if isinstance(evals.get("test"), Mapping) else {}
    bits = [
        f"mode `{evals['mode']}`" if evals.get("mode") else None,
        f"encoder `{evals['encoder']}`" if evals.get("encoder") else None,
        f"seeds {fmt(evals['seeds'])}" if evals.get("seeds") is not None else None,
        f"test file `{test['path']}`" if test.get("path") else None,
        f"{test.get('num_used', test.get('num_examples'))} real test examples"
        if test.get("num_examples") is not None
        else None,
    ]
    bits = [b for b in bits if b]
    text = "A small task model trained on synthetic.jsonl, scored on real test data"
    return text + (": " + ", ".join(bits) if bits else "") + ".\n"


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

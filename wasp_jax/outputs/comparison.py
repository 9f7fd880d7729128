"""The report's "was it worth it?" section: the synthetic set against its baselines.

The table of the synthetic set and the zero-shot sets (with the spread over subsample draws),
the DP classifiers' table ("what the same budget buys as a classifier"), and the conclusion:
the gain over the equal-size zero-shot set, judged by one rule (`beyond_spread`) that the
experiments' tables use as well.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wasp_jax.outputs.run_files import field, fmt, md_table, mean_std

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
    (when both sets have at least two subsample draws, the gain of the draws' means, judged
    against their spread, see `spread_conclusion`), the best DP classifier, and OnlyPrivate."""
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
            # judged like with like: the mean over the draws, against the draws' spread
            gain = 100 * (d_syn["accuracy"]["mean"] - d_base["accuracy"]["mean"])
            std = [100 * float(d["accuracy"].get("std") or 0.0) for d in (d_syn, d_base)]
            text += f" on the full sets and by {gain:+.1f} on average over the subsample draws"
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

"""Renders the IMDb table (`experiments.table_imdb`) from its per-cell JSONs into MD and CSV.

Each cell JSON holds one dataset's STM scores over the STM seeds: accuracy and macro-F1 as
defined by `wasp_jax.stm.metrics` (docs/method.md §3.2), computed when the cell ran. No
predictions are stored, so rendering only pools the stored per-seed scores and never retrains.
A row's figure pools the per-seed scores of every finished generation seed: mean and sample
standard deviation (ddof = 1) in percent. Rows with fewer finished seeds than planned are
marked "partial", rows with none "not run". Nothing here reads private data; the JSONs only
hold test scores.
"""

from __future__ import annotations

import csv
import io
import json
import math
import pathlib
import time

import numpy as np

GROUPS = {
    "reference": "References (no synthetic data)",
    "replay": "Replay: DP voting over the WASP authors' six pre-generated PLM pools",
    "live": "Live: generation with SmolLM2-135M-Instruct and Gemma-3-270M on this CPU",
}

#: Row-name prefixes of the methods that read no private data (no epsilon).
NO_PRIVATE = ("zerogen", "multi-zeroshot", "random-control")

#: Rows that cannot differ from another row in replay mode, and why (never run, never filled).
REPLAY_NA = {
    "aug-pe[*]": "not runnable in replay: Aug-PE's rephrase variations need a live PLM; with one "
    "pool and no generation, DP votes cannot change what is drawn, so the data would equal the "
    "ZeroGen row of that pool",
    "random-control": "identical by construction to wasp-no-weighting in replay (prompts do not "
    "matter when rows are drawn from files; both split every round's budget evenly)",
}


REPLAY_MEANING = {
    "wasp": "WASP votes (Top-Q, eps = 4) set each round's per-pool budget; rows are drawn "
    "from the pools in file order, so prompts and the good/bad picks have no effect",
    "wasp-no-contrastive": "as wasp, releasing only the nearest histogram (smaller sigma); "
    "prompts do not exist in replay",
    "wasp-no-weighting": "as wasp without pool weighting: every round's budget split evenly",
}


def row_meaning(row: str, group: str) -> str:
    """One line saying what a row is."""
    if group == "replay" and row in REPLAY_MEANING:
        return REPLAY_MEANING[row]
    pool = "pool" if group == "replay" else "PLM"
    if row.startswith("real-"):
        return (
            f"STM on the first {int(row[5:]):,} real IMDb training reviews "
            "(`shared/data/imdb/train.jsonl`); not private, an upper bound"
        )
    if row == "only-private":
        return "STM on the 100 private reviews only; not DP, a reference"
    if row.startswith("zerogen["):
        return f"zero-shot data of one {pool}, no private data (ZeroGen)"
    if row == "multi-zeroshot":
        return f"zero-shot data split evenly over all {pool}s, no private data"
    if row.startswith("aug-pe["):
        return f"Aug-PE inside WASP's machinery: one {pool}, Top-1 DP votes, rephrasing"
    if row == "random-control":
        return "WASP prompts built from random same-class synthetic samples; no votes, no privacy"
    if row == "wasp":
        return f"WASP: Top-Q DP votes, contrastive prompts, {pool} weighting, eps = 4"
    if row == "wasp-no-contrastive":
        return "WASP without contrastive prompts (good examples only, nearest histogram only)"
    if row == "wasp-no-weighting":
        return f"WASP without {pool} weighting (budget split evenly)"
    if row == "wasp-epsinf":
        return "WASP at epsilon = ∞: the same votes with no noise (sigma = 0), not DP"
    if row.startswith("wasp-eps"):
        return f"WASP at epsilon = {row[len('wasp-eps') :]}"
    return row


def summary(values) -> dict:
    """mean / std (ddof = 1, 0 for one value) / per_seed of a list of floats."""
    v = [float(x) for x in values]
    std = float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
    return {"mean": float(np.mean(v)), "std": std, "per_seed": v}


def _rows_in_order(planned: list[str]) -> list[tuple[str, str]]:
    seen, out = set(), []
    for key in planned:
        group, row, _ = key.split("__")
        if (group, row) not in seen:
            seen.add((group, row))
            out.append((group, row))
    return out


def aggregate(runs_dir: pathlib.Path, planned: list[str]) -> list[dict]:
    """One dict per planned (group, row) with pooled scores and completion status."""
    records = {}
    for p in sorted(runs_dir.glob("*__*__g*.json")):
        records[p.stem] = json.loads(p.read_text())
    table = []
    for group, row in _rows_in_order(planned):
        keys = [k for k in planned if k.startswith(f"{group}__{row}__")]
        done = [records[k] for k in keys if k in records]
        acc = [a for r in done for a in r["accuracy"]["per_seed"]]
        f1 = [a for r in done for a in r["macro_f1"]["per_seed"]]
        eps = done[0].get("epsilon") if done else None
        status = "done" if len(done) == len(keys) else ("partial" if done else "not run")
        table.append({
            "group": group,
            "row": row,
            "meaning": row_meaning(row, group),
            "epsilon": eps,
            "sigma": done[0].get("sigma") if done else None,
            "acc": summary(acc) if acc else None,
            "f1": summary(f1) if f1 else None,
            "gen_seeds": len(done),
            "gen_seeds_planned": len(keys),
            "stm_seeds": len(done[0]["accuracy"]["per_seed"]) if done else 0,
            "n_train": done[0]["n_train"] if done else None,
            "seconds": sum(r["seconds"] for r in done),
            "status": status,
        })  # fmt: skip
    return table


def _pct(s: dict | None) -> str:
    if s is None:
        return "-"
    if len(s["per_seed"]) == 1:
        return f"{100 * s['mean']:.2f} (one score, no spread)"
    return f"{100 * s['mean']:.2f} ± {100 * s['std']:.2f}"


def _eps(row: dict) -> str:
    """epsilon of a row, from its name (so rows not yet run show it too), plus sigma."""
    name = row["row"]
    if row["group"] == "reference":
        return "∞ (not DP)" if name == "only-private" else "n/a (public)"
    if name.startswith(NO_PRIVATE):
        return "– (no private data)"
    eps = name[len("wasp-eps") :] if name.startswith("wasp-eps") else "4"
    eps = "∞" if eps == "inf" else eps
    sigma = row.get("sigma")
    return eps if sigma is None else f"{eps} (σ = {sigma:.3g})"


def comparisons(table: list[dict], group: str) -> list[str]:
    """Sentences placing WASP against every other row of `group` (diff and seed spread)."""
    rows = {r["row"]: r for r in table if r["group"] == group and r["acc"]}
    w = rows.get("wasp")
    if w is None:
        return [f"- {group}: WASP has no finished cell yet."]
    out = []
    for name, r in rows.items():
        if name == "wasp":
            continue
        d = 100 * (w["acc"]["mean"] - r["acc"]["mean"])
        spread = 100 * max(w["acc"]["std"], r["acc"]["std"])
        verdict = "within the seed spread" if abs(d) <= spread else ("above" if d > 0 else "below")
        out.append(
            f"- {group}: WASP {_pct(w['acc'])} vs {name} {_pct(r['acc'])}: "
            f"{d:+.2f} points ({verdict}; larger std {spread:.2f})"
        )
    return out


def to_csv(table: list[dict]) -> str:
    buf = io.StringIO()
    fields = ["group", "row", "epsilon", "acc_mean", "acc_std", "macro_f1_mean", "macro_f1_std"]
    fields += ["gen_seeds", "gen_seeds_planned", "stm_seeds", "n_train", "status"]
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for r in table:
        e = None if r["row"].startswith(NO_PRIVATE) else r["epsilon"]
        w.writerow({
            "group": r["group"],
            "row": r["row"],
            "epsilon": "" if e is None else ("inf" if math.isinf(e) else e),
            "acc_mean": "" if r["acc"] is None else f"{r['acc']['mean']:.4f}",
            "acc_std": "" if r["acc"] is None else f"{r['acc']['std']:.4f}",
            "macro_f1_mean": "" if r["f1"] is None else f"{r['f1']['mean']:.4f}",
            "macro_f1_std": "" if r["f1"] is None else f"{r['f1']['std']:.4f}",
            "gen_seeds": r["gen_seeds"],
            "gen_seeds_planned": r["gen_seeds_planned"],
            "stm_seeds": r["stm_seeds"],
            "n_train": "" if r["n_train"] is None else r["n_train"],
            "status": r["status"],
        })  # fmt: skip
    return buf.getvalue()


def _invocations(runs_dir: pathlib.Path) -> list[dict]:
    path = runs_dir / "_invocations.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


#: Where the cells ran.
MACHINE = (
    "2-core x86 CPU, 24 GiB RAM, JAX on CPU, no accelerator. The cells that finished on "
    "2026-11-28 shared it with other jobs (contended timings); the later ones ran alone."
)


def stm_mode(meta: dict) -> str:
    return meta.get("stm", {}).get("mode", "probe")


def stm_line(meta: dict) -> str:
    """The MD bullet that says which STM produced the accuracies."""
    st = meta["settings"]
    test = (
        f"test set = the first {st['test_size']} reviews of `shared/data/imdb/test.jsonl` (a "
        "fixed, shuffled-once subset of the real IMDb test set)"
    )
    if stm_mode(meta) == "probe":
        return (
            "- STM metric: linear probe (logistic regression, `wasp_jax.stm.train_probe`) on "
            f"frozen {st['embedder']} embeddings (texts truncated to {st['max_length']} tokens; "
            "the same embedder and truncation serve the DP votes of these runs), 300 full-batch "
            f"Adam steps, early stopping on a 10% split of the training set; {test}. The "
            "fine-tuned STM has its own table, `imdb_table_finetune.md`, on a subset of the rows."
        )
    hp = meta["stm"].get("hparams", {})
    return (
        f"- STM metric: fine-tuned {st['embedder']} sequence classifier "
        "(`wasp_jax.stm.train_classifier`: mean pooling + linear head, AdamW, weight decay "
        f"0.01, 10% warm-up then linear decay, batch 16, {st['max_length']} tokens, dropout), "
        f"peak learning rate {hp.get('learning_rate')}, up to {hp.get('epochs')} epochs with "
        f"early stopping (patience {hp.get('patience')}) on the validation loss of a 10% split of "
        f"the training set, best epoch restored. Sets under 200 texts (whose split would hold "
        f"under 20) train without a split for max(6 epochs, "
        f"{meta['stm'].get('small_set_min_steps')} steps). {test}. Only the rows listed were run."
    )


def stm_seed_meaning(meta: dict) -> str:
    if stm_mode(meta) == "probe":
        return "the probe seed only changes its validation split"
    return "the STM seed sets the validation split, batch order and dropout"


def to_markdown(table: list[dict], meta: dict, runs_dir: pathlib.Path, notes: str) -> str:
    st = meta["settings"]
    done = sum(r["gen_seeds"] for r in table)
    planned = sum(r["gen_seeds_planned"] for r in table)
    cell_secs = sum(r["seconds"] for r in table)
    inv = _invocations(runs_dir)
    inv_secs = sum(i["seconds"] for i in inv)
    complete = done == planned
    lines = [
        "# IMDb table: WASP and baselines at CPU scale"
        + ("" if stm_mode(meta) == "probe" else f" ({stm_mode(meta)}d STM)")
        + ("" if complete else " (PARTIAL)"),
        "",
        f"Status: {done} of {planned} cells finished"
        + ("." if complete else "; rows marked partial / not run are missing seeds.")
        + f" Rendered {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "- Command: "
        + "; ".join(
            f"`{c}`" for c in dict.fromkeys([meta["command"]] + [i["command"] for i in inv])
        )
        + " (re-running resumes: finished cells are skipped).",
        f"- Wall time: {cell_secs / 60:.1f} min inside the finished cells, summed (model "
        "loading and test-set embedding, once per invocation, come on top; "
        f"{len(inv)} invocation(s) ran to the end, {inv_secs / 60:.1f} min in all; others "
        "were stopped and resumed).",
        f"- Machine: {MACHINE}",
        stm_line(meta),
        "- The real-N references take the first N reviews of `shared/data/imdb/train.jsonl`, "
        "which include the 100 private reviews (they are its first 50 per class).",
        f"- Live budget: PLMs {', '.join(st['plms'])}; N = {st['budget']} synthetic reviews per "
        f"run (N_0 = {st['initial']} zero-shot, then T = {st['rounds']} rounds), Q = {st['q']}, "
        f"S = {st['s']}, {st['min_new_tokens']}-{st['max_new_tokens']} new tokens, "
        "epsilon = 4, delta = 1e-5 unless the row says otherwise; M = 100 private reviews "
        "(the bundled `wasp_jax/data/imdb/private.jsonl`). Zero-shot rows use N zero-shot samples.",
        f"- Replay budget: N = {st['replay_budget']} drawn over T = {st['replay_rounds']} rounds "
        f"(N_0 = N / (T + 1)) from the pools {', '.join(st['pools'])}; Q = 8, S = 8, "
        "epsilon = 4, delta = 1e-5 unless stated. Replay zero-shot rows take the first rows of "
        "each pool in file order with equal class quotas (deterministic).",
        "- Seeds: a generation seed is one full pipeline run (its DP noise and sampling); every "
        f"dataset is scored with each STM seed ({stm_seed_meaning(meta)}). Mean ± std pool all "
        "(generation seed × STM seed) scores; std is ddof = 1.",
        "",
    ]
    for group, title in GROUPS.items():
        rows = [r for r in table if r["group"] == group]
        if not rows:
            continue
        lines += [f"## {title}", ""]
        lines.append(
            "| row | what it is | ε | accuracy % | macro-F1 % | gen seeds | STM seeds "
            "| n train | status |"
        )
        lines.append("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
        for r in rows:
            lines.append(
                f"| {r['row']} | {r['meaning']} | {_eps(r)} | {_pct(r['acc'])} | {_pct(r['f1'])} "
                f"| {r['gen_seeds']}/{r['gen_seeds_planned']} | {r['stm_seeds']} "
                f"| {r['n_train'] if r['n_train'] is not None else '-'} | {r['status']} |"
            )
        if group == "replay":
            for name, why in REPLAY_NA.items():
                lines.append(f"| {name} | {why} | | n/a | n/a | | | | not applicable |")
        if group != "reference":
            lines.append("| wasp-eps4 | same run as the `wasp` row | 4 | = wasp | | | | | |")
        lines.append("")
    lines += ["## Where WASP stands (generated from the numbers above)", ""]
    for group in ("replay", "live"):
        lines += comparisons(table, group)
    lines.append("")
    if notes:
        lines += ["## Reading", "", notes.strip(), ""]
    return "\n".join(lines)


def table_name(stm: str) -> str:
    """File stem of the table of one STM metric: imdb_table (probe) or imdb_table_finetune."""
    return "imdb_table" if stm == "probe" else f"imdb_table_{stm}"


def write_table(out: pathlib.Path, meta: dict, planned: list[str], stm: str = "probe"):
    """Writes `<name>.md` and `<name>.csv` under `out` (name from `table_name`); returns the
    aggregated rows. Rows without any finished cell are left out of a non-probe table."""
    name = table_name(stm)
    runs_dir = out / f"{name}_runs"
    table = aggregate(runs_dir, planned)
    if stm != "probe":
        table = [r for r in table if r["gen_seeds"]]
    notes_path = out / f"{name}_notes.md"
    notes = notes_path.read_text() if notes_path.is_file() else ""
    (out / f"{name}.csv").write_text(to_csv(table))
    (out / f"{name}.md").write_text(to_markdown(table, meta, runs_dir, notes))
    return table

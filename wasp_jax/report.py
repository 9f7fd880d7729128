"""Human-readable outputs of a run: `datasheet.md`, `report.md` and its PNG plots.

Both documents are rebuilt from the files the runner leaves in the workdir (`config.json`,
`privacy.json`, `metrics.jsonl`, `synthetic.jsonl` and, once evaluated, `eval.json`). Those
files hold only public inputs, post-noise values and synthetic data, and this module reads
nothing else: it never opens the private data file (it only names it, as configured). All
files are written atomically; plots go to `<workdir>/plots/` (matplotlib, Agg backend).

Example:
    from wasp_jax import report
    report.write_datasheet("runs/demo")   # -> runs/demo/datasheet.md
    report.write_report("runs/demo")      # -> runs/demo/report.md, runs/demo/plots/*.png
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

from wasp_jax import data as data_io
from wasp_jax import plots as plots_lib
from wasp_jax.data import DataError

#: Licence of each model the project can load (registry name -> licence); the datasheet
#: names them because the synthetic texts are model outputs.
MODEL_LICENCES = {
    "smollm2-135m-instruct": "Apache-2.0 (HuggingFaceTB/SmolLM2-135M-Instruct)",
    "smollm2-135m": "Apache-2.0 (HuggingFaceTB/SmolLM2-135M)",
    "gemma3-270m": "Gemma Terms of Use (google/gemma-3-270m)",
    "all-minilm-l6-v2": "Apache-2.0 (sentence-transformers/all-MiniLM-L6-v2)",
}

METHOD_TEXT = {
    "wasp": "WASP: zero-shot start from several PLMs, then per round Top-Q nearest and farthest "
    "votes of the private samples over the synthetic pool, Gaussian noise, PLM weighting of the "
    "next budget and contrastive (bad/good) few-shot prompts built from the noisy votes.",
    "aug_pe": "Aug-PE: one PLM, Top-1 nearest-neighbour votes (one histogram), Gaussian noise, "
    "rephrase variations of the most-voted samples.",
    "zerogen": "ZeroGen: one PLM prompted zero-shot with the class; no private data is used.",
    "multi_zeroshot": "Multi-PLM zero-shot: several PLMs prompted zero-shot with the class; no "
    "private data is used.",
    "random_control": "Random in-class control: WASP's prompts built from random same-class "
    "synthetic samples, with no votes; no private data is used.",
    "replay": "Replay: WASP's DP voting and selection over pre-generated candidate pools read "
    "from files; no live generation.",
}


# ------------------------------------------------------------------------------ loading


def _get(mapping: Mapping[str, Any] | None, *names: str, default: Any = None) -> Any:
    """First present key of `names` (tolerates naming variants of the runner's files)."""
    for name in names:
        if mapping and name in mapping and mapping[name] is not None:
            return mapping[name]
    return default


def load_run(workdir: str | pathlib.Path) -> dict[str, Any]:
    """Reads a run's output files.

    Returns:
      {"config", "privacy", "metrics", "synthetic", "eval"}; `eval` is None when absent.

    Raises:
      DataError: the folder or one of its required files is missing or malformed.
    """
    workdir = pathlib.Path(workdir)
    if not workdir.is_dir():
        raise DataError(f"workdir {str(workdir)!r} does not exist; pass the --workdir of a run")
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
    return run


def _read_json(path: pathlib.Path) -> Any:
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{str(path)!r} is not valid JSON ({err}); rerun the pipeline") from None


def _label_names(run: Mapping[str, Any]) -> list[str]:
    names: dict[int, str] = {}
    for row in run["synthetic"]:
        names.setdefault(int(row["label"]), str(row.get("label_name", row["label"])))
    for m in run["metrics"]:
        counts = _get(m, "class_counts")
        if isinstance(counts, Mapping):
            for i, key in enumerate(counts):
                names.setdefault(i, str(key))
        elif isinstance(counts, Sequence):
            for i in range(len(counts)):
                names.setdefault(i, str(i))
    size = max(names) + 1 if names else 0
    return [names.get(i, str(i)) for i in range(size)]


def _counts(rows: Sequence[Mapping[str, Any]], key: str) -> dict[Any, int]:
    out: dict[Any, int] = {}
    for row in rows:
        out[row.get(key)] = out.get(row.get(key), 0) + 1
    return out


# ------------------------------------------------------------------------------ markdown


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isinf(value):
            return "inf"
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ", ".join(_fmt(v) for v in value)
    if isinstance(value, Mapping):
        return "; ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _uses_private_data(run: Mapping[str, Any]) -> bool:
    used = _get(run["privacy"], "private_data_used")
    if used is not None:
        return bool(used)
    return run["config"].get("method", "wasp") in ("wasp", "aug_pe", "replay")


def _privacy_section(run: Mapping[str, Any]) -> str:
    cfg, ledger = run["config"], run["privacy"]
    method = cfg.get("method", "wasp")
    parties = _get(ledger, "num_parties", default=_get(cfg.get("data"), "num_parties", default=1))
    if not _uses_private_data(run):
        return (
            f"No private data is used by method `{method}`: the synthetic data depends only on "
            "public inputs (models, prompts, task description), so no privacy is spent and "
            "there is no private set for a guarantee to be about.\n"
        )
    adjacency = _get(ledger, "adjacency", default="add_remove")
    unit = {
        "add_remove": "adding or removing one private record",
        "replace_one": "replacing one private record by another",
    }.get(adjacency, adjacency)
    releases = _get(ledger, "releases", default=[])
    kinds = releases[0].get("what") if releases and isinstance(releases[0], Mapping) else None
    rows = [
        ("privacy unit", "one private record (one labelled text)"),
        ("neighbouring datasets", f"{adjacency}: differ by {unit}"),
        ("epsilon (target)", _get(ledger, "epsilon")),
        ("delta", _get(ledger, "delta")),
        ("epsilon spent so far", _get(ledger, "epsilon_spent")),
        ("accounting", _get(ledger, "accounting")),
        ("noise std sigma (aggregate)", _get(ledger, "sigma")),
        ("L2 sensitivity", _get(ledger, "sensitivity")),
        ("voting rounds T (planned)", _get(ledger, "rounds")),
        ("rounds released", _get(ledger, "rounds_released", default=len(releases))),
        ("noisy histograms per round", kinds or _get(ledger, "num_histograms")),
        ("data parties L", parties),
    ]
    text = _table(("quantity", "value"), [(k, "-" if v is None else v) for k, v in rows])
    text += (
        "\nThe guarantee is (epsilon, delta)-DP with respect to the private records: the only "
        "private-dependent values released are the Gaussian-noised vote histograms; the PLM "
        "weights, the selected examples, the prompts and every synthetic text are "
        "post-processing of those noisy histograms and public inputs. It protects records, not "
        "people: a person who contributed several records is protected at a weaker level.\n"
    )
    if isinstance(parties, int) and parties > 1:
        text += (
            f"\nWith L = {parties} data parties each adds noise of std sigma/sqrt(L) to its own "
            "histogram and only the sum is seen. This assumes **secure aggregation** (or a "
            "trusted server): a party's own noisy histogram carries only 1/sqrt(L) of the "
            "noise, so seeing it alone would give a much weaker guarantee.\n"
        )
    return text


def _models_section(cfg: Mapping[str, Any]) -> str:
    gen = cfg.get("generation", {})
    emb = _get(cfg.get("embedder"), "name", default="-")
    plms = list(gen.get("plms", []))
    if cfg.get("method") == "replay":
        plms = [pathlib.Path(p).stem for p in _get(cfg.get("replay"), "pools", default=[])]
    rows = [("generator (PLM)", p, MODEL_LICENCES.get(p, "see the model's card")) for p in plms]
    rows.append(("embedder", emb, MODEL_LICENCES.get(emb, "see the model's card")))
    text = _table(("role", "model", "licence"), rows)
    return text + (
        "\nThe synthetic texts are outputs of the generators above and are subject to their "
        "licences and use policies.\n"
    )


def write_datasheet(workdir: str | pathlib.Path) -> pathlib.Path:
    """Writes `<workdir>/datasheet.md`: what a consumer of the synthetic data must know.

    Returns:
      The datasheet's path.

    Raises:
      DataError: the workdir is not a finished run.
    """
    workdir = pathlib.Path(workdir)
    run = load_run(workdir)
    cfg, syn = run["config"], run["synthetic"]
    names = _label_names(run)
    method = cfg.get("method", "wasp")
    by_class = _counts(syn, "label")
    by_plm = _counts(syn, "plm")
    by_round = _counts(syn, "round")
    private_path = _get(cfg.get("data"), "private_path", default="")
    parts = [
        f"# Datasheet: synthetic `{cfg.get('task', '?')}` data ({method})\n",
        f"`synthetic.jsonl` holds **{len(syn)}** labelled synthetic texts "
        "(`text`, `label`, `label_name`, `plm`, `round`). "
        f"Classes: {', '.join(f'{i} = {n}' for i, n in enumerate(names))}.\n",
        "## Privacy guarantee\n",
        _privacy_section(run),
        "## Method\n",
        METHOD_TEXT.get(method, method) + f" Seed {cfg.get('seed', '-')}.\n",
        "## Models\n",
        _models_section(cfg),
        "## Sizes and class balance\n",
        _table(
            ("label", "class", "samples", "share"),
            [
                (i, n, by_class.get(i, 0), f"{by_class.get(i, 0) / max(len(syn), 1):.1%}")
                for i, n in enumerate(names)
            ],
        ),
        "\n" + _table(("PLM", "samples"), sorted(by_plm.items(), key=lambda kv: str(kv[0]))),
        "\n" + _table(("round", "samples"), sorted(by_round.items(), key=lambda kv: str(kv[0]))),
        "\n## Private data (as configured)\n",
        _private_provenance(private_path, _uses_private_data(run)),
        "## Known limitations\n",
        _limitations(_uses_private_data(run)),
    ]
    return data_io.atomic_write_text(workdir / "datasheet.md", "\n".join(parts))


def _private_provenance(private_path: str, used: bool) -> str:
    if not used:
        return "None used.\n"
    text = f"Private samples read from `{private_path or '(not set)'}`. "
    if pathlib.Path(private_path).name == "private.jsonl" and "wasp_jax" in private_path:
        text += (
            "This is the bundled demo file: 100 public IMDb reviews standing in for private "
            "data (`wasp_jax/data/imdb/PROVENANCE.md` gives the source, selection and sha256). "
        )
    return text + (
        "No private text, count or statistic is stored in this workdir; under add/remove "
        "adjacency even the number of private records is not released.\n"
    )


def _limitations(used_private: bool) -> str:
    items = [
        "Labels are the class the generator was prompted with; they are not verified, and "
        "small generators often drift off-class or off-topic.",
        "The synthetic texts can contain anything the generators learned in pre-training, "
        "including memorised text; DP covers only the private records used in voting.",
        "Quality depends on the generators: small models give short, repetitive texts.",
    ]
    if used_private:
        items.append(
            "At small epsilon the noise dominates the votes of large pools, so the selected "
            "good/bad examples and the PLM weights can be close to random (see report.md)."
        )
    return "".join(f"- {item}\n" for item in items)


# ------------------------------------------------------------------------------ report


def write_report(workdir: str | pathlib.Path) -> pathlib.Path:
    """Writes `<workdir>/report.md` and its plots under `<workdir>/plots/`.

    Returns:
      The report's path.

    Raises:
      DataError: the workdir is not a finished run.
    """
    workdir = pathlib.Path(workdir)
    run = load_run(workdir)
    cfg, ledger, metrics, syn = run["config"], run["privacy"], run["metrics"], run["synthetic"]
    names = _label_names(run)
    by_class = _counts(syn, "label")
    plots = workdir / "plots"
    made = {
        "PLM weights per round": plots_lib.plm_weights(metrics, plots / "plm_weights.png"),
        "Class balance": plots_lib.class_balance(names, by_class, plots / "class_balance.png"),
        "Stage timings": plots_lib.stage_seconds(metrics, plots / "stage_seconds.png"),
    }
    if run["eval"]:
        made["Downstream accuracy"] = plots_lib.downstream(run["eval"], plots / "eval.png")
    total_s = sum(
        float(v) for m in metrics for v in (_get(m, "stage_seconds", default={}) or {}).values()
    )
    parts = [
        f"# Run report: `{cfg.get('task', '?')}`, method `{cfg.get('method', '?')}`\n",
        _table(
            ("epsilon", "delta", "sigma", "rounds", "synthetic samples", "stage seconds (sum)"),
            [
                (
                    _get(ledger, "epsilon", default="-"),
                    _get(ledger, "delta", default="-"),
                    _get(ledger, "sigma", default="-"),
                    _get(ledger, "rounds", "num_rounds", default="-"),
                    len(syn),
                    round(total_s, 1),
                )
            ],
        ),
        "Only public inputs, post-noise values and synthetic data appear below.\n",
        "## Per round\n",
        _table(
            ("round", "PLMs", "weights", "budgets", "class counts", "samples"),
            [
                (
                    m.get("round", "-"),
                    _get(m, "plm_names", default="-"),
                    _get(m, "plm_weights", default="-"),
                    _get(m, "plm_budgets", default="-"),
                    _get(m, "class_counts", default="-"),
                    _get(m, "n_synthetic", default="-"),
                )
                for m in metrics
            ],
        ),
    ]
    summary_rows = _vote_summary_rows(metrics, names)
    if summary_rows:
        parts += [
            "## Noisy votes per class (post-noise)\n",
            _table(
                ("round", "histogram", "class", "candidates", "mean", "std", "max"), summary_rows
            ),
        ]
    if run["eval"]:
        rows = [
            (k, v.get("mean"), v.get("std"), v.get("per_seed", "-"))
            for k, v in run["eval"].items()
            if isinstance(v, Mapping) and "mean" in v
        ]
        parts += ["## Downstream evaluation\n", _table(("metric", "mean", "std", "per seed"), rows)]
    selected_rows = _selected_rows(metrics, syn, names)
    if selected_rows:
        parts += [
            "## Top noisy-vote picks used in the prompts (synthetic texts)\n",
            _table(("round", "class", "top good (nearest)", "top bad (farthest)"), selected_rows),
        ]
    for title, path in made.items():
        if path is not None:
            parts.append(f"## {title}\n\n![{title}](plots/{path.name})\n")
    parts += ["## Examples (synthetic)\n", _examples(syn, names)]
    return data_io.atomic_write_text(workdir / "report.md", "\n".join(parts))


def _vote_summary_rows(metrics, names) -> list[tuple]:
    """Rows of the runner's `noisy_vote_summary` ({hist: [per-class {n, mean, std, max}]})."""
    rows = []
    for m in metrics:
        summary = _get(m, "noisy_vote_summary")
        if not isinstance(summary, Mapping):
            continue
        for hist, per_class in summary.items():
            if isinstance(per_class, Mapping):  # an unknown layout: show it flat
                rows.append((m.get("round"), hist, "-", "-", _fmt(per_class), "-", "-"))
                continue
            for c, stats in enumerate(per_class):
                name = names[c] if c < len(names) else str(c)
                rows.append(
                    (m.get("round"), hist, name)
                    + tuple(stats.get(k, "-") for k in ("n", "mean", "std", "max"))
                )
    return rows


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _selected_rows(metrics, syn, names) -> list[tuple]:
    """The first good and bad pick per class and round (`selected` indexes synthetic.jsonl)."""
    rows = []
    for m in metrics:
        sel = _get(m, "selected")
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


def _examples(syn: Sequence[Mapping[str, Any]], names: Sequence[str], per_class: int = 2) -> str:
    lines = []
    for c, name in enumerate(names):
        picked = [row for row in syn if int(row["label"]) == c][:per_class]
        for row in picked:
            text = _short(row["text"], 240)
            lines.append(
                f"- **{name}** ({row.get('plm', '?')}, round {row.get('round', '?')}): {text}"
            )
    return "\n".join(lines) + "\n" if lines else "(no samples)\n"

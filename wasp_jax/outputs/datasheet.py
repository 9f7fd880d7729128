"""`datasheet.md`: what a consumer of a run's synthetic data must know.

The privacy unit and guarantee (epsilon, delta, adjacency, accounting, sigma, rounds, and the
secure-aggregation assumption when several parties contribute), the method, the models and
their licences, sizes and class balance, the measured utility, the private data's provenance
as configured, and known limitations. Built only from the run's public outputs (see
`wasp_jax.outputs.run_files.load_run`); the private data file is named, never opened.

Example:
    from wasp_jax.outputs import datasheet
    datasheet.write_datasheet("runs/demo")   # -> runs/demo/release/datasheet.md
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from typing import Any

from wasp_jax import data as data_io
from wasp_jax.outputs import run_files
from wasp_jax.outputs.api_usage import usage_section
from wasp_jax.privacy.noise_source import SEEDED_NOTE

#: What may be handed to others (also in the README).
SHARING = (
    "Only the run's `release/` folder (this datasheet's folder) may be handed to others; the "
    "workdir's `private/` folder (checkpoint, secret, caches) must never leave the machine."
)

#: Licence of each model the project can load (registry name -> licence); the datasheet
#: names them because the synthetic texts are model outputs.
MODEL_LICENCES = {
    "smollm2-135m-instruct": "Apache-2.0 (HuggingFaceTB/SmolLM2-135M-Instruct)",
    "smollm2-135m": "Apache-2.0 (HuggingFaceTB/SmolLM2-135M)",
    "gemma3-270m": "Gemma Terms of Use (google/gemma-3-270m)",
    "all-minilm-l6-v2": "Apache-2.0 (sentence-transformers/all-MiniLM-L6-v2)",
    # the WASP authors' pre-generated pools (replay), per ../shared/data/README.md
    "gpt2-xl": "MIT (openai-community/gpt2-xl)",
    "llama-2-7b-chat-hf": "Llama 2 Community License",
    "vicuna-7b-1.5v": "Llama 2 Community License (lmsys/vicuna-7b-v1.5)",
    "opt-6.7b": "OPT-175B non-commercial licence (facebook/opt-6.7b)",
    "chatglm3-6b-base": "ChatGLM3-6B model licence",
    "flan-t5-xl": "Apache-2.0 (google/flan-t5-xl)",
}


#: What "neighbouring" means under each adjacency.
UNITS = {
    "add_remove": "adding or removing one private record",
    "replace_one": "replacing one private record by another",
}
#: The guarantee with extra releases (`eval.dp_classifiers`) besides the synthetic data.
EXTRA_NOTE = (
    "\nWith eval.dp_classifiers the evaluation also trained DP classifiers on the private "
    "records, each a release with noise of its own at the run's epsilon and delta (their test "
    "scores are in eval_baselines.json). They spend privacy in addition to the synthetic "
    "data: everything this run released is (epsilon total, delta total)-DP by basic "
    "composition, while the synthetic data alone is (epsilon, delta)-DP.\n"
)


def _uses_private_data(run: Mapping[str, Any]) -> bool:
    used = run_files.field(run["privacy"], "private_data_used")
    if used is not None:
        return bool(used)
    # a ledger without the flag: whether the run planned any release
    return run_files.field(run["privacy"], "sigma") is not None


def _privacy_section(run: Mapping[str, Any]) -> str:
    cfg, ledger = run["config"], run["privacy"]
    method = cfg.get("method", "wasp")
    parties = run_files.field(
        ledger, "num_parties", default=run_files.field(cfg.get("data"), "num_parties", default=1)
    )
    if not _uses_private_data(run):
        return (
            f"No private data is used by method `{method}`: the synthetic data depends only on "
            "public inputs (models, prompts, task description), so no privacy is spent and "
            "there is no private set for a guarantee to be about.\n"
        )
    adjacency = run_files.field(ledger, "adjacency", default="add_remove")
    unit = UNITS.get(adjacency, adjacency)
    releases = run_files.field(ledger, "releases", default=[])
    kinds = releases[0].get("what") if releases and isinstance(releases[0], Mapping) else None
    rows = [
        ("privacy unit", "one private record (one labelled text)"),
        ("neighbouring datasets", f"{adjacency}: differ by {unit}"),
        ("epsilon (target)", run_files.field(ledger, "epsilon")),
        ("delta", run_files.field(ledger, "delta")),
        ("epsilon spent so far", run_files.field(ledger, "epsilon_spent")),
        ("accounting", run_files.field(ledger, "accounting")),
        ("noise", run_files.field(ledger, "noise")),
        ("noise std sigma (aggregate)", run_files.field(ledger, "sigma")),
        ("L2 sensitivity", run_files.field(ledger, "sensitivity")),
        ("voting rounds T (planned)", run_files.field(ledger, "rounds")),
        ("rounds released", run_files.field(ledger, "rounds_released", default=len(releases))),
        ("noisy histograms per round", kinds or run_files.field(ledger, "num_histograms")),
        ("data parties L", parties),
    ]
    per_kind = run_files.field(ledger, "kinds")
    if per_kind:  # WASP+: sigma, sensitivity and epsilon come from each kind's plan (below)
        rows[7] = ("noise std sigma", "per release kind, see the table below")
        rows[8] = ("L2 sensitivity", "per release kind, see the table below")
        rows[11] = ("noisy releases per round", ", ".join(k["kind"] for k in per_kind))
    rows += _extra_rows(ledger)
    text = run_files.md_table(
        ("quantity", "value"), [(k, "-" if v is None else v) for k, v in rows]
    )
    if per_kind:
        text += "\n" + _kinds_table(per_kind)
    if (
        str(run_files.field(ledger, "epsilon")) in ("inf", "Infinity")
        or run_files.field(ledger, "sigma") == 0
    ):
        return text + (
            "\n**This data is NOT differentially private.** The run was configured with "
            "epsilon = inf, so the vote histograms got no noise: the selected examples, the PLM "
            "weights and hence the synthetic texts depend on the private records without any "
            "formal protection. (The clean votes were kept in memory and never written.)\n"
        )
    if run_files.field(ledger, "noise") == "seeded":
        return text + (
            f"\n**This data is NOT differentially private ({SEEDED_NOTE}).** The run was "
            "configured with privacy.noise = 'seeded', so its noise was drawn from the public "
            "seed: anyone who knows the seed can regenerate the noise and subtract it. Use such "
            "runs for tests and replication only.\n"
        )
    text += (
        "\nThe guarantee is (epsilon, delta)-DP with respect to the private records: the only "
        "private-dependent values released are the noised vote histograms (discrete Gaussian "
        "noise drawn from a secret the run took from the operating system's CSPRNG and never "
        "wrote outside its private folder); the PLM "
        "weights, the selected examples, the prompts and every synthetic text are "
        "post-processing of those noisy histograms and public inputs. It protects records, not "
        "people: a person who contributed several records is protected at a weaker level.\n"
    )
    if _extra_rows(ledger):
        text += EXTRA_NOTE
    if isinstance(parties, int) and parties > 1:
        text += (
            f"\nWith L = {parties} data parties each adds noise of std sigma/sqrt(L) to its own "
            "histogram and only the sum is seen. This assumes **secure aggregation** (or a "
            "trusted server): a party's own noisy histogram carries only 1/sqrt(L) of the "
            "noise, so seeing it alone would give a much weaker guarantee.\n"
        )
    return text


def _extra_rows(ledger) -> list[tuple[str, Any]]:
    """The ledger's releases outside the plan (the evaluation's DP classifiers) and the
    run's total spend with them; [] for a run without any."""
    extra = run_files.field(ledger, "extra_releases", default=[])
    if not extra:
        return []
    return [
        ("extra releases (the evaluation's DP classifiers)", ", ".join(e["name"] for e in extra)),
        ("epsilon of the extra releases", sum(float(e.get("epsilon", 0)) for e in extra)),
        ("epsilon total (basic composition)", run_files.field(ledger, "epsilon_total")),
        ("delta total", run_files.field(ledger, "delta_total")),
    ]


def _kinds_table(per_kind) -> str:
    """One row per release kind of the plan: its noise, sensitivity and epsilon."""
    rows = [
        (
            k.get("kind"),
            k.get("measures", "-"),
            k.get("sigma", "-"),
            k.get("sensitivity", "-"),
            k.get("releases", "-"),
            k.get("epsilon", "-"),
        )
        for k in per_kind
        if isinstance(k, Mapping)
    ]
    head = ("release kind", "measures", "sigma", "L2 sensitivity", "releases", "epsilon alone")
    return run_files.md_table(head, rows) + (
        "\nEach kind's epsilon is that of its own releases alone (RDP, at the run's delta); "
        "all kinds together compose to the epsilon spent above.\n"
    )


def _models_section(cfg: Mapping[str, Any], described: Mapping[str, Any]) -> str:
    emb = run_files.field(cfg.get("embedder"), "name", default="-")
    # the candidate sources the method states (replayed pools by file stem), else the PLMs
    plms = list(described.get("sources") or cfg.get("generation", {}).get("plms", []))
    rows = [("generator (PLM)", p, MODEL_LICENCES.get(p, "see the model's card")) for p in plms]
    rows.append(("embedder", emb, MODEL_LICENCES.get(emb, "see the model's card")))
    text = run_files.md_table(("role", "model", "licence"), rows)
    return text + (
        "\nThe synthetic texts are outputs of the generators above and are subject to their "
        "licences and use policies.\n"
    )


def _tuning_note(cfg: Mapping[str, Any], metrics) -> list[str]:
    """How the generators were tuned on DP feedback (nothing when they were not)."""
    rows = [
        (m["round"], name, rec) for m in metrics or [] for name, rec in m.get("tuning", {}).items()
    ]
    if not rows:
        return []
    tc = cfg.get("tune", {})
    table = run_files.md_table(
        ("round", "PLM", "pairs", "steps", "DPO loss first -> last"),
        [
            (r, name, rec.get("pairs", 0), rec.get("steps", 0), _loss_span(rec.get("loss") or []))
            for r, name, rec in rows
        ],
    )
    return [
        "\n**The generators were tuned on DP feedback.** Before each voted round, LoRA adapters "
        f"(rank {tc.get('rank', '-')} on {', '.join(tc.get('targets', []))}) were trained with "
        "the DPO loss on pairs of the previous round's candidates of one class, the one of "
        "higher margin to the noisy class prototypes preferred, and merged into the local "
        "PLMs that sampled the round. The training read only synthetic texts and post-noise "
        "values, so it spent no privacy beyond the releases above.\n",
        table,
    ]


def _loss_span(loss) -> str:
    return f"{loss[0]:.3f} -> {loss[-1]:.3f}" if loss else "-"


def write_datasheet(workdir: str | pathlib.Path) -> pathlib.Path:
    """Writes `datasheet.md`, what a consumer of the synthetic data must know, into the
    release folder of `workdir` (a workdir, or a copy of its release folder).

    Returns:
      The datasheet's path.

    Raises:
      DataError: the workdir is not a finished run.
    """
    run = run_files.load_run(workdir)
    workdir = run_files.release_folder(workdir)
    cfg, syn = run["config"], run["synthetic"]
    names = run_files.label_names(run)
    method = cfg.get("method", "wasp")
    by_class = run_files.counts(syn, "label")
    by_plm = run_files.counts(syn, "plm")
    by_round = run_files.counts(syn, "round")
    private_path = run_files.field(cfg.get("data"), "private_path", default="")
    parts = [
        f"# Datasheet: synthetic `{run_files.task_title(cfg)}` data ({method})\n",
        f"`synthetic.jsonl` holds **{len(syn)}** labelled synthetic texts "
        "(`text`, `label`, `label_name`, `plm`, `round`). "
        f"Classes: {', '.join(f'{i} = {n}' for i, n in enumerate(names))}.\n",
        SHARING + "\n",
        "## Privacy guarantee\n",
        _privacy_section(run),
        "## Method\n",
        (run["method"].get("summary") or f"Method `{method}`.")
        + f" Seed {cfg.get('seed', '-')}.\n",
        *_tuning_note(cfg, run["metrics"]),
        "## Models\n",
        _models_section(cfg, run["method"]),
        *usage_section(run["metrics"]),
        "## Sizes and class balance\n",
        run_files.md_table(
            ("label", "class", "samples", "share"),
            [
                (i, n, by_class.get(i, 0), f"{by_class.get(i, 0) / max(len(syn), 1):.1%}")
                for i, n in enumerate(names)
            ],
        ),
        "\n"
        + run_files.md_table(("PLM", "samples"), sorted(by_plm.items(), key=lambda kv: str(kv[0]))),
        "\n"
        + run_files.md_table(
            ("round", "samples"), sorted(by_round.items(), key=lambda kv: str(kv[0]))
        ),
        "\n## Private data (as configured)\n",
        _private_provenance(private_path, _uses_private_data(run)),
        "## Measured utility\n",
        _utility(run["eval"], run.get("baselines")),
        "## Known limitations\n",
        _limitations(_uses_private_data(run)),
    ]
    return data_io.atomic_write_text(workdir / "datasheet.md", "\n".join(parts))


def _utility(evals: Mapping[str, Any] | None, baselines: Mapping[str, Any] | None) -> str:
    if not evals or not isinstance(evals.get("accuracy"), Mapping):
        return "Not evaluated (set eval.test_path to train and test a small task model).\n"
    text = (
        f"Accuracy {run_files.mean_std(evals['accuracy'])} % (mean ± std over seeds) of a small "
        "task model trained on this data and tested on real data"
    )
    for name, b in (baselines or {}).items():
        if isinstance(b, Mapping):
            label = name if b.get("dp") or "not DP" in name else f"{name}, not DP"
            if b.get("kind") == "dp_classifier":
                label += ", its own epsilon, spent in addition to the run's"
            text += f"; {label}: {run_files.mean_std(b.get('accuracy'))} %"
    return text + "; see report.md, eval.json and eval_baselines.json.\n"


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
        "No private text, and no statistic computed from it before the noise, is stored in "
        "the release folder; config.json holds only the configured path. The run used every "
        "record of that file, and the guarantee is stated for those records.\n"
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

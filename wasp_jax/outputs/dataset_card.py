"""`README.md` in the release folder: the Hugging Face dataset card of the synthetic data.

YAML metadata first (licence as the generators allow, task, size category, tags for
synthetic data and differential privacy, the data file), then the privacy statement, how the
data was made, how to load it, and its known limits. Built from the run's public outputs
only, like the datasheet (`wasp_jax.outputs.datasheet`), whose sections it reuses.

Example:
    from wasp_jax.outputs import dataset_card
    dataset_card.write_card("runs/demo")   # -> runs/demo/release/README.md
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping
from typing import Any

from wasp_jax import data as data_io
from wasp_jax.outputs import datasheet, run_files

#: SPDX-style licence ids the card can name when every model of the run shares one.
_LICENCE_IDS = {"Apache-2.0": "apache-2.0", "MIT": "mit"}


def licence_id(models: list[str]) -> str:
    """The card's ``license``: the one licence all models share, else ``other``."""
    found = set()
    for m in models:
        text = datasheet.MODEL_LICENCES.get(m, "")
        found.add(next((v for k, v in _LICENCE_IDS.items() if text.startswith(k)), "other"))
    return found.pop() if len(found) == 1 else "other"


def size_category(n: int) -> str:
    """The hub's size bucket of `n` rows."""
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if n < limit:
            return name
    return "100K<n<1M"


def _yaml(meta: Mapping[str, Any]) -> str:
    """Flat YAML of strings and lists of strings (JSON-quoted, which YAML reads as is)."""
    lines = ["---"]
    for key, value in meta.items():
        if isinstance(value, list):
            lines.append(f"{key}:")
            lines += [f"- {json.dumps(v)}" for v in value]
        else:
            lines.append(f"{key}: {json.dumps(value)}")
    return "\n".join(lines + ["---", ""])


def write_card(workdir: str | pathlib.Path) -> pathlib.Path:
    """Writes `README.md` (the dataset card) into the release folder of `workdir`.

    Raises:
      DataError: the workdir is not a finished run.
    """
    run = run_files.load_run(workdir)
    release = run_files.release_folder(workdir)
    cfg, syn = run["config"], run["synthetic"]
    plms = list(run["method"].get("sources") or cfg.get("generation", {}).get("plms", []))
    embedder = run_files.field(cfg.get("embedder"), "name", default="")
    private = datasheet._uses_private_data(run)
    tags = ["synthetic", "wasp-jax"] + (["differential-privacy"] if private else [])
    meta = {
        "license": licence_id(plms + [embedder] if embedder else plms),
        "language": ["en"],
        "task_categories": ["text-classification"],
        "size_categories": [size_category(len(syn))],
        "tags": tags,
        "pretty_name": f"Synthetic {run_files.task_title(cfg)} ({cfg.get('method', 'wasp')})",
        "configs": ["default"],
    }
    head = _yaml(meta).replace('configs:\n- "default"', _configs_block())
    names = run_files.label_names(run)
    parts = [
        head,
        f"# {meta['pretty_name']}\n",
        f"{len(syn)} labelled synthetic texts written by language models "
        f"({', '.join(plms) or '-'}), in `synthetic.jsonl` (`text`, `label`, `label_name`, "
        f"`plm`, `round`). Classes: {', '.join(f'{i} = {n}' for i, n in enumerate(names))}.\n",
        "## Privacy\n",
        datasheet._privacy_section(run),
        "## How it was made\n",
        (run["method"].get("summary") or f"Method `{cfg.get('method')}`.")
        + " Written by wasp-jax; `datasheet.md` beside this card has the full record, "
        "`privacy.json` the ledger.\n",
        "## Loading\n",
        "```python\nfrom datasets import load_dataset\n"
        'ds = load_dataset("json", data_files="synthetic.jsonl", split="train")\n```\n',
        "## Licence\n",
        "The texts are outputs of the models above and are subject to their licences: "
        + "; ".join(f"{m}: {datasheet.MODEL_LICENCES.get(m, 'see its model card')}" for m in plms)
        + ".\n",
        "## Known limitations\n",
        datasheet._limitations(private),
    ]
    return data_io.atomic_write_text(release / "README.md", "\n".join(parts))


def _configs_block() -> str:
    return (
        "configs:\n- config_name: default\n  data_files:\n  - split: train\n"
        "    path: synthetic.jsonl"
    )

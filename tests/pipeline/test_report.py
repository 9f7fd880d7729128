"""Datasheet and report generation from a synthetic fixture workdir (no models, no jax)."""

import json
import pathlib

import pytest

from wasp_jax.data import DataError, atomic_write_json, atomic_write_jsonl
from wasp_jax.outputs import datasheet, report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PRIVATE_MARKER = "zqx private marker sentence that must never leak"


def make_run(workdir: pathlib.Path, *, parties: int = 1, method: str = "wasp", with_eval=True):
    """Writes the files a finished run leaves behind, with made-up post-noise values."""
    private = workdir.parent / "private.jsonl"
    atomic_write_jsonl(
        private, [{"text": f"{PRIVATE_MARKER} {i}", "label": i % 2} for i in range(6)]
    )
    cfg = {
        "method": method,
        "seed": 0,
        "task": "imdb",
        "data": {"private_path": str(private), "num_parties": parties},
        "generation": {"plms": ["smollm2-135m-instruct", "gemma3-270m"], "rounds": 2},
        "embedder": {"name": "all-minilm-l6-v2"},
    }
    atomic_write_json(workdir / "config.json", cfg)
    atomic_write_json(
        workdir / "privacy.json",
        {
            "epsilon": 4.0,
            "delta": 1e-5,
            "adjacency": "add_remove",
            "sigma": 3.21,
            "sensitivity": 2.82,
            "rounds": 2,
            "accounting": "pld",
            "private_data_used": method in ("wasp", "aug_pe", "replay"),
            "num_parties": parties,
            "releases": [
                {"round": r, "what": ["nearest", "farthest"], "sigma": 3.21} for r in (1, 2)
            ],
            "rounds_released": 2,
            "epsilon_spent": 3.999,
        },
    )
    metrics = [
        {
            "round": r,
            "plm_names": ["smollm2-135m-instruct", "gemma3-270m"],
            "plm_weights": [0.5 + 0.1 * r, 0.5 - 0.1 * r],
            "plm_budgets": [12 + r, 12 - r],
            "class_counts": [12 * (r + 1), 12 * (r + 1)],
            "stage_seconds": {"generate": 10.0 + r, "embed": 2.0, "vote": 0.1},
            "noisy_vote_summary": None
            if r == 0
            else {
                h: [{"n": 12 * r, "mean": 0.5, "std": 3.0, "max": mx}, {"n": 0}]
                for h, mx in (("nearest", 7.5), ("farthest", 9.1))
            },
            "n_synthetic": 24 * (r + 1),
            "selected": None if r == 0 else {"good": [[2, 4], [3]], "bad": [[0], []]},
        }
        for r in range(3)
    ]
    atomic_write_jsonl(workdir / "metrics.jsonl", metrics)
    syn = [
        {
            "text": f"synthetic review number {i} | with a pipe",
            "label": i % 2,
            "label_name": ["negative", "positive"][i % 2],
            "plm": ["smollm2-135m-instruct", "gemma3-270m"][i % 3 % 2],
            "round": i // 24,
        }
        for i in range(72)
    ]
    atomic_write_jsonl(workdir / "synthetic.jsonl", syn)
    if with_eval:
        atomic_write_json(
            workdir / "eval.json",
            {
                "accuracy": {"mean": 0.71, "std": 0.02, "per_seed": [0.69, 0.73]},
                "macro_f1": {"mean": 0.70, "std": 0.03, "per_seed": [0.67, 0.73]},
                "mode": "probe",
                "seeds": [0, 1],
                "test": {"path": "t.jsonl", "num_examples": 500, "num_used": 500},
                "hyperparameters": {"steps": 300},
            },
        )
    return workdir


def _all_text(workdir: pathlib.Path) -> str:
    return "".join(
        p.read_bytes().decode("utf-8", "replace") for p in workdir.rglob("*") if p.is_file()
    )


def test_datasheet_contents(tmp_path):
    wd = make_run(tmp_path / "run")
    path = datasheet.write_datasheet(wd)
    text = path.read_text()
    assert path == wd / "datasheet.md"
    for needle in (
        "one private record",
        "add_remove",
        "3.21",  # sigma
        "| noisy histograms per round | nearest, farthest |",
        "| rounds released | 2 |",
        "pld",
        "72",  # total size
        "Apache-2.0",
        "Gemma Terms of Use",
        "all-minilm-l6-v2",
        "| 0 | negative | 36 | 50.0% |",
        "Known limitations",
        "Accuracy 71.0 ± 2.0 %",
        str(tmp_path / "private.jsonl"),
    ):
        assert needle in text, needle
    assert "secure aggregation" not in text


def test_datasheet_secure_aggregation_and_public_methods(tmp_path):
    text = datasheet.write_datasheet(make_run(tmp_path / "a", parties=4)).read_text()
    assert "secure aggregation" in text and "L = 4" in text
    text = datasheet.write_datasheet(make_run(tmp_path / "b", method="zerogen")).read_text()
    assert "no privacy is spent" in text


def test_report_and_plots(tmp_path):
    wd = make_run(tmp_path / "run")
    path = report.write_report(wd)
    text = path.read_text()
    pngs = sorted(p.name for p in (wd / "plots").glob("*.png"))
    assert pngs == ["class_balance.png", "eval.png", "plm_weights.png", "stage_seconds.png"]
    for name in pngs:
        data = (wd / "plots" / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000
        assert f"(plots/{name})" in text
    assert "71.0 ± 2.0" in text and "Downstream evaluation" in text
    assert "mode `probe`, seeds 0, 1, test file `t.jsonl`, 500 real test examples." in text
    assert "| synthetic set (this run) | 72 | 71.0 ± 2.0 | 70.0 ± 3.0 | yes |" in text
    assert "| hyperparameters" not in text
    assert "0.6, 0.4" in text  # round-1 PLM weights
    assert "| 1 | nearest | negative | 12 | 0.5 | 3 | 7.5 |" in text
    assert "| 2 | farthest | positive | 0 | - | - | - |" in text
    row = "| 1 | negative | synthetic review number 2 \\| with a pipe | synthetic review number 0"
    assert row in text
    assert "| 2 | positive | synthetic review number 3 \\| with a pipe | - |" in text
    # no temp files left behind by the atomic writes
    assert not [p for p in wd.rglob("*") if p.name.endswith(".tmp")]


def test_report_without_eval_has_no_accuracy_plot(tmp_path):
    wd = make_run(tmp_path / "run", with_eval=False)
    text = report.write_report(wd).read_text()
    assert not (wd / "plots" / "eval.png").exists()
    assert "Downstream" not in text


def test_outputs_never_contain_private_text(tmp_path):
    wd = make_run(tmp_path / "run", parties=2)
    datasheet.write_datasheet(wd)
    report.write_report(wd)
    assert PRIVATE_MARKER not in _all_text(wd)


def test_not_a_run_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        report.write_report(tmp_path / "missing")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text(json.dumps({"method": "wasp"}))
    with pytest.raises(DataError, match="privacy.json"):
        datasheet.write_datasheet(tmp_path / "half")


def test_report_compares_against_the_baselines(tmp_path):
    wd = make_run(tmp_path / "run")
    atomic_write_json(
        wd / "eval_baselines.json",
        {
            "zero-shot start": {
                "accuracy": {"mean": 0.65, "std": 0.01}, "macro_f1": {"mean": 0.6, "std": 0.0},
                "n_train": 24, "dp": True,
            },
            "OnlyPrivate (not DP)": {
                "accuracy": {"mean": 0.8, "std": 0.04}, "macro_f1": {"mean": 0.79, "std": 0.04},
                "n_train": 6, "dp": False,
            },
        },
    )  # fmt: skip
    # a task file is titled by its spec's name, not its path
    spec = tmp_path / "my_news.json"
    spec.write_text(json.dumps({"name": "news topics"}))
    cfg = json.loads((wd / "config.json").read_text())
    atomic_write_json(wd / "config.json", {**cfg, "task": str(spec)})
    text = report.write_report(wd).read_text()
    assert "# Run report: `news topics`" in text and str(spec) not in text.splitlines()[0]
    assert "| synthetic set (this run) | 72 | 71.0 ± 2.0 | 70.0 ± 3.0 | yes |" in text
    assert "| zero-shot start | 24 | 65.0 ± 1.0 | 60.0 ± 0.0 | yes |" in text
    assert "| OnlyPrivate (not DP) | 6 | 80.0 ± 4.0 | 79.0 ± 4.0 | **no** |" in text
    assert "changed accuracy by +6.0 points" in text and "not differentially private" in text
    sheet = datasheet.write_datasheet(wd).read_text()
    assert "# Datasheet: synthetic `news topics`" in sheet
    assert "zero-shot start: 65.0 ± 1.0 %" in sheet and "OnlyPrivate (not DP): " in sheet
    assert "not DP, not DP" not in sheet
    assert (wd / "plots" / "eval.png").stat().st_size > 1000


def test_report_shows_filter_counts(tmp_path):
    wd = make_run(tmp_path / "run")
    rows = [json.loads(x) for x in (wd / "metrics.jsonl").read_text().splitlines()]
    rows[1]["filtered"] = {"empty": 0, "too_short": 3, "prompt_leak": 2}
    atomic_write_jsonl(wd / "metrics.jsonl", rows)
    text = report.write_report(wd).read_text()
    assert "too short 3, prompt leak 2" in text


def _examples_section(text: str) -> str:
    return text[text.index("## Examples (synthetic") :]


def test_report_examples_come_from_the_last_round(tmp_path):
    wd = make_run(tmp_path / "run")  # rounds 0, 1, 2 of 24 rows each, labels alternate
    section = _examples_section(report.write_report(wd).read_text())
    assert section.startswith("## Examples (synthetic, round 2: the last)")
    shown = [line for line in section.splitlines() if line.startswith("- **")]
    assert len(shown) == 4 and all("round 2)" in line for line in shown)
    # evenly spread over the class's last-round rows in file order: its first and its last
    for i in (48, 70, 49, 71):
        assert f"synthetic review number {i} " in section, i
    assert "instead" not in section


def test_report_examples_fall_back_to_a_class_s_latest_round(tmp_path):
    wd = make_run(tmp_path / "run")
    rows = [json.loads(x) for x in (wd / "synthetic.jsonl").read_text().splitlines()]
    rows = [r for r in rows if not (r["round"] == 2 and r["label"] == 1)]
    atomic_write_jsonl(wd / "synthetic.jsonl", rows)
    section = _examples_section(report.write_report(wd).read_text())
    assert section.startswith("## Examples (synthetic, round 2: the last)")
    assert "show their latest round instead: positive (round 1)." in section
    shown = [line for line in section.splitlines() if line.startswith("- **")]
    assert [line.split("round ")[1][0] for line in shown] == ["2", "2", "1", "1"]
    assert "synthetic review number 25 " in section and "synthetic review number 47 " in section


def test_datasheet_names_a_non_dp_baseline_once():
    evals = {"accuracy": {"mean": 0.8, "std": 0.01, "per_seed": [0.8]}}
    baselines = {
        "OnlyPrivate (not DP)": {"dp": False, "accuracy": {"mean": 0.9, "std": 0.0}},
        "zero-shot start": {"dp": False, "accuracy": {"mean": 0.7, "std": 0.0}},
    }
    text = datasheet._utility(evals, baselines)
    assert "OnlyPrivate (not DP):" in text and "not DP, not DP" not in text
    assert "zero-shot start, not DP:" in text


def test_dataset_card_is_a_hub_card_with_the_privacy_statement(tmp_path):
    import yaml

    from wasp_jax.outputs import dataset_card

    wd = make_run(tmp_path / "run")
    path = dataset_card.write_card(wd)
    assert path == wd / "README.md"
    text = path.read_text()
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["license"] == "other"  # Apache-2.0 and the Gemma terms differ
    assert meta["size_categories"] == ["n<1K"] and meta["task_categories"] == [
        "text-classification"
    ]
    assert {"synthetic", "differential-privacy"} <= set(meta["tags"])
    assert meta["configs"][0]["data_files"][0]["path"] == "synthetic.jsonl"
    assert "one private record" in text and 'load_dataset("json"' in text
    assert "Gemma Terms of Use" in text and "## Known limitations" in text
    assert dataset_card.licence_id(["smollm2-135m-instruct", "all-minilm-l6-v2"]) == "apache-2.0"
    assert dataset_card.size_category(1000) == "1K<n<10K"


def test_class_balance_stays_readable_with_many_long_names(tmp_path):
    """Ten classes with long names: rendered to PNG, no two class labels overlap."""
    from wasp_jax.outputs import plots

    names = [f"{w} services and everything related to them, such as {w} repairs" for w in
             ("home", "health", "beauty", "event", "travel", "grocery", "bar", "arts", "shop",
              "food")]  # fmt: skip
    counts = {i: 10 + i for i in range(10)}
    path = plots.class_balance(names, counts, tmp_path / "balance.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig, ax = plots.class_balance_figure(names, counts)
    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.get_yticklabels()]
    assert len(boxes) == 10
    for i in range(10):
        for j in range(i + 1, 10):
            assert not boxes[i].overlaps(boxes[j]), (i, j)

"""Private and test data in the formats people have: JSONL, CSV/TSV, Parquet and a saved
Hugging Face dataset folder, through one validation (the same errors, with the row named)."""

import json

import pytest

from wasp_jax import data as data_io
from wasp_jax import records

ROWS = [
    {"text": "a warm and moving film", "label": 1},
    {"text": "dull, and far too long", "label": 0},
    {"text": "great cast", "label": "positive"},
]
NAMES = ("negative", "positive")


def _csv(path, rows, sep=",", text="text", label="label"):
    lines = [f"{text}{sep}{label}"] + [f'"{r["text"]}"{sep}{r["label"]}' for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _read(path, **kw):
    return data_io.read_labeled_jsonl(path, label_names=NAMES, **kw)


def _want():
    return [(r["text"], 1 if r["label"] in (1, "positive") else 0) for r in ROWS]


def test_csv_and_tsv_read_like_jsonl(tmp_path):
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    for path in (jsonl, _csv(tmp_path / "p.csv", ROWS), _csv(tmp_path / "p.tsv", ROWS, "\t")):
        assert [(r["text"], r["label"]) for r in _read(path)] == _want(), path


def test_other_column_names_are_mapped(tmp_path):
    path = _csv(tmp_path / "p.tsv", ROWS, "\t", text="review", label="sentiment")
    with pytest.raises(
        data_io.DataError, match=r"line 2: missing field\(s\) \['text'\].*--text-field"
    ):
        _read(path, label_field="sentiment")
    got = _read(path, text_field="review", label_field="sentiment")
    assert [(r["text"], r["label"]) for r in got] == _want()


@pytest.mark.parametrize("kind", ["csv", "tsv", "parquet", "dataset"])
def test_a_bad_row_is_named_in_every_format(tmp_path, kind):
    bad = ROWS[:2] + [{"text": " \u200b ", "label": 1}]
    path = _write(tmp_path, kind, bad)
    where = "line 4" if kind in ("csv", "tsv") else "row 3"  # the header is line 1
    with pytest.raises(data_io.DataError, match=f'{where}: "text" is empty'):
        _read(path)
    outside = ROWS[:1] + [{"text": "fine text", "label": 7}]
    path = _write(tmp_path / "b", kind, outside)
    where = "line 3" if kind in ("csv", "tsv") else "row 2"
    with pytest.raises(data_io.DataError, match=f"{where}: label 7 is outside the task"):
        _read(path)


@pytest.mark.parametrize("kind", ["parquet", "dataset"])
def test_parquet_and_dataset_folders_read_like_jsonl(tmp_path, kind):
    path = _write(tmp_path, kind, ROWS)
    assert records.kind_of(path) == kind
    assert [(r["text"], r["label"]) for r in _read(path)] == _want()


def _write(folder, kind, rows):
    folder.mkdir(parents=True, exist_ok=True)
    if kind in ("csv", "tsv"):
        return _csv(folder / f"p.{kind}", rows, "," if kind == "csv" else "\t")
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table({"text": [r["text"] for r in rows], "label": [str(r["label"]) for r in rows]})
    ints = all(isinstance(r["label"], int) for r in rows)
    if ints:
        table = pa.table({"text": [r["text"] for r in rows], "label": [r["label"] for r in rows]})
    if kind == "parquet":
        pq.write_table(table, folder / "p.parquet")
        return folder / "p.parquet"
    # the layout of datasets' save_to_disk: Arrow stream files listed in state.json
    out = folder / "ds"
    out.mkdir()
    with pa.OSFile(str(out / "data-00000-of-00001.arrow"), "wb") as sink:
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    (out / "state.json").write_text(
        json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]})
    )
    (out / "dataset_info.json").write_text("{}")
    return out


def test_init_task_and_check_task_read_csv(tmp_path, capsys):
    from wasp_jax import cli

    words = "a long enough review of a film that someone watched at the weekend with friends"
    rows = [{"text": f"{words} {i}", "label": ["negative", "positive"][i % 2]} for i in range(8)]
    path = _csv(tmp_path / "data.csv", rows)
    out = tmp_path / "task.json"
    assert cli.main(["init-task", "--data", str(path), "--description", "film reviews",
                     "--out", str(out)]) == 0  # fmt: skip
    assert cli.main(["check-task", str(out), "--data", str(path)]) == 0
    assert "OK for" in capsys.readouterr().out

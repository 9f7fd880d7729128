"""Labelled records from the formats such data comes in: JSONL, CSV/TSV, Parquet, and a local
Hugging Face `datasets` folder (``save_to_disk``).

Every reader returns ``(position, record)`` pairs, the position being what an error message
should name (the line of a JSONL or CSV file, the row of a Parquet file or a dataset), so one
validation (`wasp_jax.data.read_labeled_jsonl`) serves every format. CSV/TSV use Python's
``csv`` module (a label column of whole numbers becomes ints); Parquet and dataset folders
(Arrow files) use ``pyarrow``, imported only for them, with a one-line error naming the
install when it is absent. ``text_field`` / ``label_field`` map other column names.
"""

from __future__ import annotations

import csv
import json
import pathlib
import re
from typing import Any

from wasp_jax.errors import DataError

#: File suffixes by format.
CSV_SUFFIXES = {".csv": ",", ".tsv": "\t"}
PARQUET_SUFFIXES = (".parquet", ".pq")
_INT = re.compile(r"^-?\d+$")


def kind_of(path: pathlib.Path) -> str:
    """ "jsonl", "csv", "parquet" or "dataset" (a `save_to_disk` folder)."""
    if path.is_dir():
        if (path / "dataset_info.json").is_file() or (path / "state.json").is_file():
            return "dataset"
        return "folder"
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    return "jsonl"


def _pyarrow(path: pathlib.Path, what: str):
    try:
        import pyarrow  # noqa: F401  (the reader of Parquet and Arrow files)
    except ImportError:
        raise DataError(
            f"{what} file {str(path)!r} is Parquet/Arrow, which needs pyarrow: "
            "pip install pyarrow (or convert the file to JSONL or CSV)"
        ) from None
    import pyarrow.ipc
    import pyarrow.parquet

    return pyarrow


def read_csv(path: pathlib.Path, what: str) -> list[tuple[str, dict]]:
    """CSV or TSV with a header row; positions are file lines."""
    rows = []
    try:
        with path.open("r", encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh, delimiter=CSV_SUFFIXES[path.suffix.lower()])
            if not reader.fieldnames:
                return []
            for rec in reader:
                if None in rec:
                    raise DataError(
                        f"{what} file {str(path)!r}, line {reader.line_num}: more fields than "
                        "the header names; quote texts that hold the delimiter"
                    )
                rows.append((f"line {reader.line_num}", dict(rec)))
    except UnicodeDecodeError as err:
        raise DataError(
            f"{what} file {str(path)!r} is not UTF-8 text (byte {err.start}); save it as UTF-8"
        ) from None
    except csv.Error as err:
        raise DataError(f"{what} file {str(path)!r}: not valid CSV ({err})") from None
    return rows


def _table_rows(table) -> list[dict[str, Any]]:
    return table.to_pylist()


def read_parquet(path: pathlib.Path, what: str) -> list[tuple[str, dict]]:
    pa = _pyarrow(path, what)
    try:
        table = pa.parquet.read_table(path)
    except (OSError, pa.ArrowException) as err:
        raise DataError(f"{what} file {str(path)!r}: not a readable Parquet file ({err})") from None
    return [(f"row {i + 1}", r) for i, r in enumerate(_table_rows(table))]


def read_dataset_folder(path: pathlib.Path, what: str) -> list[tuple[str, dict]]:
    """A `datasets` ``save_to_disk`` folder: its Arrow files in the order `state.json` lists."""
    pa = _pyarrow(path, what)
    state = path / "state.json"
    if state.is_file():
        files = [path / f["filename"] for f in json.loads(state.read_text())["_data_files"]]
    else:
        files = sorted(path.glob("*.arrow"))
    if not files:
        raise DataError(f"{what} folder {str(path)!r} holds no .arrow files of a saved dataset")
    rows: list[dict] = []
    for file in files:
        try:
            with pa.memory_map(str(file)) as source:
                rows += _table_rows(pa.ipc.open_stream(source).read_all())
        except (OSError, pa.ArrowException) as err:
            raise DataError(
                f"{what} file {str(file)!r}: not a readable Arrow file ({err})"
            ) from None
    return [(f"row {i + 1}", r) for i, r in enumerate(rows)]


def mapped(
    rows: list[tuple[str, dict]], text_field: str, label_field: str, *, typed: bool
) -> list[tuple[str, dict]]:
    """Records whose text lives in `text_field` get it under "text"; in untyped formats
    (CSV/TSV, or a string column) a label of digits becomes an int."""
    out = []
    for pos, rec in rows:
        rec = dict(rec)
        if text_field != "text" and text_field in rec:
            rec["text"] = rec.pop(text_field)
        value = rec.get(label_field)
        if not typed and isinstance(value, str) and _INT.match(value.strip()):
            rec[label_field] = int(value)
        out.append((pos, rec))
    return out


#: Characters that print as nothing (zero-width spaces and joiners, the BOM, soft hyphen).
INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff\u00ad"


def check_text(text: str, where: str) -> None:
    """Refuses a text the models cannot read: not encodable as UTF-8 (a lone surrogate), or
    empty once whitespace and invisible characters are removed. The error names `where`
    (file and line) and the fix, never the text."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise DataError(
            f'{where}: "text" is not valid Unicode (a lone surrogate such as \\ud800 at '
            f"character {err.start}); fix or remove that character and save the file as UTF-8"
        ) from None
    if not text.translate({ord(c): None for c in INVISIBLE}).strip():
        raise DataError(
            f'{where}: "text" is empty (only whitespace or invisible characters); remove the '
            "record or give it text"
        )

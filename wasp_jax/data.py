"""Data I/O for the pipeline: validated JSONL reading, atomic writes, bundled files.

Everything the pipeline reads from the user (private samples, replay candidate pools) goes
through `read_labeled_jsonl`, which rejects bad input with a `DataError` (a
`wasp_jax.cli.UsageError`, so the CLI prints one line and exits with code 2). Error messages
name the file, the line number and the fix, and never quote the offending text: the file may
be private. Everything the pipeline writes goes through the `atomic_write_*` helpers (temp
file in the same folder + `os.replace`), so a crash never leaves a half-written output.

Example:
    rows = read_labeled_jsonl("private.jsonl", label_names=("negative", "positive"))
    warn_missing_classes(rows, ("negative", "positive"))
    atomic_write_jsonl(workdir / "synthetic.jsonl", synthetic_rows)
    path = bundled_path("imdb", "private.jsonl")
    test_path = shared_data_dir() / "imdb" / "test.jsonl"  # project machines only
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import tempfile
from collections.abc import Iterable, Sequence
from importlib import resources
from typing import Any

from wasp_jax import records
from wasp_jax.errors import DataError, DataWarning
from wasp_jax.records import check_text

__all__ = ["DataError", "DataWarning"]  # re-exported: raised by the readers below

PathLike = str | os.PathLike


# ---------------------------------------------------------------------------- reading


def _open_checked(path: PathLike, what: str) -> pathlib.Path:
    path = pathlib.Path(path)
    if not path.exists():
        raise DataError(f"{what} file {str(path)!r} does not exist; pass the path of a JSONL file")
    if path.is_dir():
        raise DataError(f"{what} path {str(path)!r} is a directory; pass the path of a JSONL file")
    if not os.access(path, os.R_OK):
        raise DataError(f"{what} file {str(path)!r} is not readable; check its permissions")
    return path


def read_jsonl(path: PathLike, *, what: str = "input") -> list[dict[str, Any]]:
    """Reads a JSON Lines file whose every non-blank line is one JSON object.

    See `read_jsonl_numbered`; this drops the line numbers.
    """
    return [obj for _, obj in read_jsonl_numbered(path, what=what)]


def read_jsonl_numbered(path: PathLike, *, what: str = "input") -> list[tuple[int, dict]]:
    """Reads a JSON Lines file whose every non-blank line is one JSON object.

    Args:
      path: the file.
      what: what the file is, for error messages ("private", "candidate pool", ...).

    Returns:
      (1-based line number, object) pairs in file order. Blank lines are skipped.

    Raises:
      DataError: unreadable path, bad UTF-8, malformed JSON or a non-object line (the message
        gives the 1-based line number but never the line's content).
    """
    path = _open_checked(path, what)
    rows = []
    try:
        with path.open("r", encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as err:
                    # Some messages end in "at" ("Unterminated string starting at").
                    why = f"{err.msg.removesuffix(' at')} at column {err.colno}"
                    raise DataError(
                        f"{what} file {str(path)!r}, line {lineno}: not valid JSON ({why}); "
                        'each line must be one JSON object such as {"text": "...", "label": 0}'
                    ) from None
                if not isinstance(obj, dict):
                    raise DataError(
                        f"{what} file {str(path)!r}, line {lineno}: expected a JSON object, got "
                        f"{type(obj).__name__}; each line must look like "
                        '{"text": "...", "label": 0}'
                    )
                rows.append((lineno, obj))
    except UnicodeDecodeError as err:
        raise DataError(
            f"{what} file {str(path)!r} is not UTF-8 text (byte {err.start}); save it as UTF-8"
        ) from None
    except OSError as err:
        raise DataError(f"cannot read {what} file {str(path)!r}: {err.strerror}") from None
    return rows


def _resolve_label(
    raw: Any, label_names: Sequence[str] | None, where: str
) -> tuple[int, str | None]:
    """Maps a raw `label` value (int id, or a class name) to (id, name)."""
    allowed = (
        f"an int in [0, {len(label_names)}) or one of {list(label_names)}"
        if label_names is not None
        else "a non-negative int"
    )
    if isinstance(raw, str) and label_names is not None:
        lowered = [name.lower() for name in label_names]
        if raw.strip().lower() in lowered:
            idx = lowered.index(raw.strip().lower())
            return idx, label_names[idx]
        raise DataError(f"{where}: label {raw!r} is not a class of the task; use {allowed}")
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise DataError(f"{where}: label must be {allowed}, got a {type(raw).__name__}")
    if raw < 0 or (label_names is not None and raw >= len(label_names)):
        raise DataError(f"{where}: label {raw} is outside the task; use {allowed}")
    return raw, (label_names[raw] if label_names is not None else None)


def read_records(
    path: PathLike, *, what: str, label_field: str = "label", text_field: str = "text"
) -> list[tuple[str, dict]]:
    """(position, record) pairs of a JSONL, CSV/TSV or Parquet file or a saved dataset folder
    (`wasp_jax.records`), with `text_field` renamed to "text"."""
    path = pathlib.Path(path)
    kind = records.kind_of(path) if path.exists() else "jsonl"
    if kind == "dataset":
        rows = records.read_dataset_folder(path, what)
    elif kind == "csv":
        rows = records.read_csv(_open_checked(path, what), what)
    elif kind == "parquet":
        rows = records.read_parquet(_open_checked(path, what), what)
    else:
        rows = [(f"line {n}", obj) for n, obj in read_jsonl_numbered(path, what=what)]
    return records.mapped(rows, text_field, label_field, typed=kind == "jsonl")


def read_labeled_jsonl(
    path: PathLike,
    *,
    label_names: Sequence[str] | None = None,
    what: str = "private",
    label_field: str = "label",
    label_offset: int = 0,
    text_field: str = "text",
) -> list[dict[str, Any]]:
    """Reads and validates a labelled JSONL file (`{"text": str, "label": int, ...}` per line).

    Args:
      path: the file.
      label_names: the task's class names, index = label id. When given, labels must lie in
        `[0, len(label_names))` (a label may also be given as a class name), and a
        `label_name` field, if present, must agree with the task (this catches a flipped label
        convention such as WASP's 0 = positive IMDb files). Without them, the `label_name`
        fields of the file must agree with each other (one name per label id).
      what: what the file is, for error messages.
      label_field: the record field holding the label (a task spec's `label_field`; Yelp
        rating reads "rating").
      label_offset: added to an int label (a task spec's `label_offset`; -1 for 1-5 stars).
        With a field other than "label", `label_name` is not checked (it names another label).

    Returns:
      One dict per record with `text` (stripped), `label` (the task's int id) and `label_name`
      (when `label_names` is given), plus any other keys of the record.

    Raises:
      DataError: unreadable path, malformed JSON (with line number), a missing `text` or
        `label` field, empty text, a label outside the task, a `label_name` that contradicts
        the task (or, without `label_names`, an earlier line), or a file with no records.
        Messages never include record text.
    """
    numbered = read_records(path, what=what, label_field=label_field, text_field=text_field)
    if not numbered:
        raise DataError(
            f"{what} file {str(path)!r} holds no records; it needs one JSON object a line"
        )
    rows, named = [], {}  # named: label id -> (first label_name, its line), without a task
    for lineno, obj in numbered:
        where = f"{what} file {str(path)!r}, {lineno}"
        missing = [key for key in ("text", label_field) if key not in obj]
        if missing:
            raise DataError(
                f"{where}: missing field(s) {missing}; each record needs "
                f'"{text_field}" (a non-empty string) and "{label_field}" (the class id); '
                "name other columns with --text-field / --label-field"
            )
        text = obj["text"]
        if not isinstance(text, str):
            raise DataError(f'{where}: "text" must be a string, got {type(text).__name__}')
        check_text(text, where)
        raw = obj[label_field]
        if isinstance(raw, int) and not isinstance(raw, bool):
            raw += label_offset
        label, name = _resolve_label(raw, label_names, where)
        given = obj.get("label_name") if label_field == "label" else None
        if name is not None and given is not None and str(given).strip().lower() != name.lower():
            raise DataError(
                f"{where}: label {label} is {name!r} in the task but the record says "
                f"label_name={given!r}; the file may use another label convention - remap its "
                f"labels to the task's order {list(label_names)}"
            )
        if name is None and given is not None:
            first, first_line = named.setdefault(label, (given, lineno))
            if str(given).strip().lower() != str(first).strip().lower():
                raise DataError(
                    f"{where}: label {label} has label_name={given!r} but {first_line} "
                    f"names it {first!r}; give each label id one label_name"
                )
        row = dict(obj)
        row["text"] = text.strip()
        row["label"] = label
        if name is not None:
            row["label_name"] = name
        rows.append(row)
    return rows


# ------------------------------------------------------------------------- writing


def _json_default(obj: Any) -> Any:
    # numpy / jax scalars and arrays, without importing either here
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serializable")


def to_json(obj: Any, *, indent: int | None = 2) -> str:
    """Serialises `obj` (numpy values allowed; NaN/inf rejected) to a JSON string."""
    return json.dumps(
        obj, indent=indent, ensure_ascii=False, default=_json_default, allow_nan=False
    )


#: Suffix of the temp files of `_atomic_write` (".<name>.<random>.tmp"); see `sweep_temp_files`.
TEMP_SUFFIX = ".tmp"


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _atomic_write(
    path: PathLike, write_fn, *, binary: bool = False, mode: int | None = None
) -> pathlib.Path:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    # mkstemp makes 0600; a file the run writes gets what open() would give it: 0666 less
    # the umask (0644 under the usual 022, 0600 under 077), unless `mode` says otherwise.
    os.fchmod(fd, (0o666 & ~_current_umask()) if mode is None else mode)
    mode = {"mode": "wb"} if binary else {"mode": "w", "encoding": "utf-8", "newline": "\n"}
    try:
        with os.fdopen(fd, **mode) as fh:
            write_fn(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    return path


def sweep_temp_files(folder: PathLike) -> list[pathlib.Path]:
    """Removes the temp files an interrupted `atomic_write_*` left in `folder` (not recursive).

    Only names of the form ".<name>.<random>.tmp" are touched, never a symlink's target;
    call it where no other writer is active (the runner does, under its workdir lock).
    Returns the removed paths.
    """
    folder = pathlib.Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        if p.name.startswith(".") and p.name.endswith(TEMP_SUFFIX) and p.name.count(".") >= 3:
            if p.is_symlink() or p.is_file():
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def atomic_write_text(path: PathLike, text: str) -> pathlib.Path:
    """Writes `text` to `path` atomically (temp file in the same folder, then `os.replace`).

    The parent folder is created if needed. On any failure the old file (if any) is untouched
    and no temp file is left behind.
    """
    return _atomic_write(path, lambda fh: fh.write(text))


def atomic_write_bytes(path: PathLike, data: bytes, *, mode: int | None = None) -> pathlib.Path:
    """Binary counterpart of `atomic_write_text` (used for PNG plots); `mode` (e.g. 0o600)
    replaces the umask's permissions and holds from the moment the file exists."""
    return _atomic_write(path, lambda fh: fh.write(data), binary=True, mode=mode)


def atomic_write_json(path: PathLike, obj: Any, *, indent: int | None = 2) -> pathlib.Path:
    """Serialises `obj` first, then writes it atomically with a trailing newline."""
    text = to_json(obj, indent=indent) + "\n"
    return atomic_write_text(path, text)


def atomic_write_jsonl(path: PathLike, rows: Iterable[Any]) -> pathlib.Path:
    """Writes one compact JSON object per line, atomically.

    `rows` may be a generator; if it (or serialisation) fails midway, nothing is written.
    """

    def write(fh):
        for row in rows:
            fh.write(to_json(row, indent=None))
            fh.write("\n")

    return _atomic_write(path, write)


def append_jsonl(path: PathLike, row: Any) -> pathlib.Path:
    """Appends one JSON line atomically (rewrites the file; fine for small logs like metrics)."""
    path = pathlib.Path(path)
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    if old and not old.endswith("\n"):
        old += "\n"
    return atomic_write_text(path, old + to_json(row, indent=None) + "\n")


def sha256_file(path: PathLike) -> str:
    """Hex sha256 of a file's bytes (streamed)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------------- bundled


def bundled_path(*parts: str) -> pathlib.Path:
    """Path of a file shipped inside the package under `wasp_jax/data/`.

    Example: `bundled_path("imdb", "private.jsonl")`.

    Raises:
      DataError: the file is not in the installed package.
    """
    resource = resources.files("wasp_jax").joinpath("data", *parts)
    path = pathlib.Path(str(resource))
    if not path.exists():
        raise DataError(
            f"bundled file wasp_jax/data/{'/'.join(parts)} is missing from the installed package; "
            "reinstall wasp-jax (pip install -e .)"
        )
    return path


def shared_data_dir() -> pathlib.Path:
    """The project's shared data folder (IMDb train/test, the WASP authors' synthetic pools).

    It is `$WASP_JAX_DATA` when that is set (non-empty), else `../shared/data` next to the
    checkout (the parent of the folder that holds the `wasp_jax` package); the folder is only
    present on the project's machines, so callers check that what they need exists. Nothing is
    read here.

    Example: `shared_data_dir() / "imdb" / "test.jsonl"`.
    """
    if os.environ.get("WASP_JAX_DATA"):
        return pathlib.Path(os.environ["WASP_JAX_DATA"])
    return pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"

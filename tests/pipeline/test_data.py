"""wasp_jax.data: validated reading, checks, atomic writes, and the bundled demo data."""

import hashlib
import json
import math
import pathlib
import re

import numpy as np
import pytest

from wasp_jax import class_checks, data
from wasp_jax.data import DataError, DataWarning
from wasp_jax.errors import UsageError

LABELS = ("negative", "positive")


def write(tmp_path, text, name="f.jsonl"):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def test_reads_and_normalises(tmp_path):
    path = write(
        tmp_path,
        '{"text": "  a good film ", "label": 1, "label_name": "positive", "extra": 7}\n'
        "\n"
        '{"text": "bad", "label": "Negative"}\n',
    )
    rows = data.read_labeled_jsonl(path, label_names=LABELS)
    assert rows == [
        {"text": "a good film", "label": 1, "label_name": "positive", "extra": 7},
        {"text": "bad", "label": 0, "label_name": "negative"},
    ]
    # without label names: any non-negative int label, but class names cannot be resolved
    other = write(tmp_path, '{"text": "a", "label": 7}\n', name="g.jsonl")
    assert data.read_labeled_jsonl(other) == [{"text": "a", "label": 7}]
    with pytest.raises(DataError, match="non-negative int"):
        data.read_labeled_jsonl(path)


def test_label_field_and_offset(tmp_path):
    path = write(tmp_path, '{"text": "ok", "label": 3, "rating": 5, "label_name": "Bars"}\n')
    names = ("1", "2", "3", "4", "5")
    rows = data.read_labeled_jsonl(path, label_names=names, label_field="rating", label_offset=-1)
    assert rows[0]["label"] == 4 and rows[0]["label_name"] == "5"
    with pytest.raises(DataError, match="missing field"):
        data.read_labeled_jsonl(path, label_names=names, label_field="stars")


BAD = {
    "malformed": (
        '{"text": "a", "label": 0}\n\n{"text": "b", "label": 1\n',
        "line 3: not valid JSON",
    ),
    "not_object": ('{"text": "a", "label": 0}\n[1, 2]\n', "line 2: expected a JSON object"),
    "missing_label": ('{"text": "a"}\n', "line 1: missing field(s) ['label']"),
    "missing_both": ("{}\n", "missing field(s) ['text', 'label']"),
    "text_not_str": ('{"text": 5, "label": 0}\n', '"text" must be a string'),
    "empty_text": (
        '{"text": "a", "label": 0}\n{"text": " \\n ", "label": 0}\n',
        'line 2: "text" is empty',
    ),
    "label_high": (
        '{"text": "a", "label": 2}\n',
        "label 2 is outside the task; use an int in [0, 2)",
    ),
    "label_negative": ('{"text": "a", "label": -1}\n', "label -1 is outside the task"),
    "label_bool": ('{"text": "a", "label": true}\n', "label must be an int"),
    "label_float": ('{"text": "a", "label": 0.0}\n', "label must be an int"),
    "label_unknown_name": ('{"text": "a", "label": "neutral"}\n', "not a class of the task"),
    "flipped": ('{"text": "a", "label": 0, "label_name": "positive"}\n', "label convention"),
    "empty_file": ("\n\n", "holds no records"),
    "bad_utf8": (b'{"text": "\xff", "label": 0}\n', "not UTF-8"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_a_clear_usage_error(case, tmp_path):
    content, expected = BAD[case]
    path = write(tmp_path, content)
    with pytest.raises(DataError) as info:
        data.read_labeled_jsonl(path, label_names=LABELS, what="private")
    message = str(info.value)
    assert expected in message, message
    assert isinstance(info.value, UsageError)  # -> exit code 2 in the CLI
    assert str(path) in message


def test_error_messages_never_quote_record_text(tmp_path):
    secret = "my secret diagnosis"
    for content in (
        f'{{"text": "{secret}", "label": 9}}\n',
        f'{{"text": "{secret}", "label": 0\n',
        f'{{"text": "{secret}", "label": 0, "label_name": "positive"}}\n',
    ):
        with pytest.raises(DataError) as info:
            data.read_labeled_jsonl(write(tmp_path, content), label_names=LABELS)
        assert secret not in str(info.value) and "secret" not in str(info.value)


def test_unreadable_paths(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        data.read_labeled_jsonl(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match="is a directory"):
        data.read_labeled_jsonl(tmp_path)


def test_class_without_samples_warns(tmp_path):
    rows = [{"text": "a", "label": 0}]
    with pytest.warns(DataWarning, match=r"no samples of class 1 \('positive'\).*only noise"):
        assert class_checks.warn_missing_classes(rows, LABELS) == [1]
    assert class_checks.warn_missing_classes(rows + [{"text": "b", "label": 1}], LABELS) == []


def test_candidate_counts():
    assert class_checks.check_candidate_counts([8, 9], 8, label_names=LABELS) == []
    with pytest.raises(DataError, match=r"class 1 \('positive'\) has 3 candidates, fewer than"):
        class_checks.check_candidate_counts([10, 3], 8, label_names=LABELS)
    with pytest.warns(DataWarning, match="fewer than voting.q=8"):
        assert class_checks.check_candidate_counts([10, 3], 8, strict=False) == [1]
    with pytest.raises(DataError, match="has no candidates"):
        class_checks.check_candidate_counts([10, 0], 8, strict=False)
    with pytest.raises(DataError, match="raise the budget"):
        class_checks.check_candidate_counts([1, 1], 2, fix="raise the budget")
    assert class_checks.class_counts([0, 1, 1, 3], 4) == [1, 2, 0, 1]


# ------------------------------------------------------------------------- atomic writes


def _leftovers(folder: pathlib.Path):
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_atomic_writes_round_trip(tmp_path):
    out = data.atomic_write_json(
        tmp_path / "sub" / "x.json", {"a": np.float32(1.5), "b": np.arange(3), "c": (1, 2)}
    )
    assert json.loads(out.read_text()) == {"a": 1.5, "b": [0, 1, 2], "c": [1, 2]}
    rows = [{"i": i, "t": "é"} for i in range(3)]
    data.atomic_write_jsonl(tmp_path / "r.jsonl", (r for r in rows))
    assert data.read_jsonl(tmp_path / "r.jsonl") == rows
    data.append_jsonl(tmp_path / "r.jsonl", {"i": 3})
    assert len(data.read_jsonl(tmp_path / "r.jsonl")) == 4
    data.atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "b.bin").stat().st_mode & 0o777 == 0o644
    assert _leftovers(tmp_path) == [] and _leftovers(tmp_path / "sub") == []


def test_failed_writes_leave_nothing_half_written(tmp_path):
    target = tmp_path / "out.jsonl"
    data.atomic_write_text(target, "old\n")

    def rows():
        yield {"ok": 1}
        raise RuntimeError("generator died midway")

    with pytest.raises(RuntimeError):
        data.atomic_write_jsonl(target, rows())
    assert target.read_text() == "old\n"
    with pytest.raises(TypeError):
        data.atomic_write_json(tmp_path / "obj.json", {"x": object()})
    with pytest.raises(ValueError):
        data.atomic_write_json(tmp_path / "nan.json", {"x": math.nan})
    with pytest.raises(TypeError):
        data.atomic_write_jsonl(target, [{"a": 1}, {"b": object()}])
    assert target.read_text() == "old\n"
    assert not (tmp_path / "obj.json").exists() and not (tmp_path / "nan.json").exists()
    assert _leftovers(tmp_path) == []


def test_sha256_file(tmp_path):
    path = write(tmp_path, "abc" * 1000)
    assert data.sha256_file(path) == hashlib.sha256(b"abc" * 1000).hexdigest()


# ------------------------------------------------------------------------- bundled data


def _provenance_hashes() -> dict[str, str]:
    text = data.bundled_path("imdb", "PROVENANCE.md").read_text()
    return dict(re.findall(r"\| `(\w+\.jsonl)` \|.*`([0-9a-f]{64})` \|", text))


def test_bundled_files_match_provenance():
    hashes = _provenance_hashes()
    assert set(hashes) == {"private.jsonl", "test.jsonl"}
    expected = {"private.jsonl": (50, 50), "test.jsonl": (250, 250)}
    texts = {}
    for name, digest in hashes.items():
        path = data.bundled_path("imdb", name)
        assert data.sha256_file(path) == digest, name
        rows = data.read_labeled_jsonl(path, label_names=LABELS)
        assert tuple(class_checks.class_counts((r["label"] for r in rows), 2)) == expected[name]
        texts[name] = {r["text"] for r in rows}
        assert len(texts[name]) == len(rows)  # no duplicates
    assert not texts["private.jsonl"] & texts["test.jsonl"]
    with pytest.raises(DataError, match="missing from the installed package"):
        data.bundled_path("imdb", "nope.jsonl")


def test_bundled_files_follow_the_documented_rule(shared_data):
    for src, name, per_class in (("train", "private", 50), ("test", "test", 250)):
        counts, kept = {0: 0, 1: 0}, []
        with open(shared_data / "imdb" / f"{src}.jsonl", "rb") as fh:
            for line in fh:
                label = json.loads(line)["label"]
                if counts[label] < per_class:
                    counts[label] += 1
                    kept.append(line)
        assert b"".join(kept) == data.bundled_path("imdb", f"{name}.jsonl").read_bytes()


def test_json_error_reads_cleanly(tmp_path):
    path = write(tmp_path, '{"text": "fine", "label": 0}\n{"text": "x')
    with pytest.raises(DataError) as err:
        data.read_labeled_jsonl(path, label_names=("neg", "pos"))
    msg = str(err.value)
    assert "line 2: not valid JSON (Unterminated string starting at column 10)" in msg, msg
    assert "at at" not in msg

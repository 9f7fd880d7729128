"""A fixed-seed pipeline with the random tiny models pins its outputs byte for byte.

Any change to the code that alters what a run produces (the synthetic texts, their order,
the privacy ledger) changes these digests. A deliberate change of behaviour updates them in
the same commit and says why; a refactoring must leave them alone.

The digests say only that something changed; on a mismatch the test compares the run with
``pinned_outputs.json`` (next to this file: the number of rows, a digest per field of every
synthetic row, a digest per field of privacy.json) and names the rows and fields that differ.
On a mismatch the test also writes the run's summary to its tmp_path; after a deliberate change,
copy that file over ``pinned_outputs.json`` and put the digests it names in the constants below.
"""

import hashlib
import json
import pathlib

import pytest

import wasp_jax
from tests.private_files import first_private
from wasp_jax import config as C
from wasp_jax.pipeline.run import runner

# Re-pinned when the sampler moved from Gumbel-max draws to inverse-CDF draws (one uniform
# per row and step): the same distribution, other samples. The ledger did not change then;
# it was re-pinned when privacy.json gained its "private" flag (true here: sigma > 0).
# The synthetic digest was re-pinned when good and bad examples became disjoint (this config's
# classes have 2 candidates for S = 2 + 2, so its bad sets are now empty in round 1), and
# again when near duplicates (equal once punctuation is removed) were filtered: 4 went here.
# The ledger was re-pinned when the noise moved to the discrete Gaussian on the vote lattice:
# this run is seeded, so privacy.json now says "noise": "seeded", "private": false, names its
# accountant and carries the NOT DP note; the synthetic texts did not change.
SYNTHETIC_SHA256 = "e37fed646b3c346743658326d145a761d991fbb8be375f7e1acc1b9e8e9e705e"
PRIVACY_SHA256 = "25f5740c6ba994a56a9d1d69fa9466eddb91d5ee0b80e98158a158528bed0b3d"

#: The field-level summary of the pinned run, used to explain a digest mismatch.
SUMMARY = pathlib.Path(__file__).with_name("pinned_outputs.json")

#: Keys of privacy.json that depend on when or where a run happened, not on what it did.
VOLATILE = ("time", "timestamp", "created", "seconds", "workdir")


def _tiny_task(tmp_path: pathlib.Path) -> str:
    """IMDb with min_words = 1 and a one-stage zero-shot prompt: the tiny models' byte-level
    output has no spaces, so this lets their samples through."""
    spec = json.loads((pathlib.Path(wasp_jax.__file__).parent / "tasks" / "imdb.json").read_text())
    spec.update(name="imdb_tiny", min_words=1)
    spec["zero_shot"] = {"prompt": spec["zero_shot"]["prompt_without_subject"]}
    path = tmp_path / "imdb_tiny.json"
    path.write_text(json.dumps(spec))
    return str(path)


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if not any(s in k for s in VOLATILE)}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def digests(workdir: pathlib.Path) -> tuple[str, str]:
    synthetic = (workdir / "release" / "synthetic.jsonl").read_bytes()
    ledger = _strip(json.loads((workdir / "release" / "privacy.json").read_text()))
    canonical = json.dumps(ledger, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(synthetic).hexdigest(), hashlib.sha256(canonical).hexdigest()


def _digest(value) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(canonical).hexdigest()[:16]


def _leaves(obj, prefix: str = "") -> dict[str, str]:
    """privacy.json flattened to dotted paths (list items by index), each leaf digested."""
    if isinstance(obj, dict) and obj:
        items = obj.items()
    elif isinstance(obj, list) and obj:
        items = ((str(i), v) for i, v in enumerate(obj))
    else:
        return {prefix or "<root>": _digest(obj)}
    out = {}
    for k, v in items:
        out.update(_leaves(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def summary(workdir: pathlib.Path) -> dict:
    """Whole-file digests plus a digest per field of every synthetic row and of the ledger."""
    syn, led = digests(workdir)
    lines = (workdir / "release" / "synthetic.jsonl").read_text().splitlines()
    rows = [{k: _digest(v) for k, v in json.loads(line).items()} for line in lines]
    ledger = _strip(json.loads((workdir / "release" / "privacy.json").read_text()))
    return {
        "synthetic_sha256": syn,
        "privacy_sha256": led,
        "synthetic_rows": rows,
        "privacy_fields": _leaves(ledger),
    }


def _changed(pinned: dict[str, str], got: dict[str, str]) -> list[str]:
    out = [f"{k} changed" for k in sorted(pinned.keys() & got.keys()) if pinned[k] != got[k]]
    out += [f"{k} is gone" for k in sorted(pinned.keys() - got.keys())]
    return out + [f"{k} is new" for k in sorted(got.keys() - pinned.keys())]


def explain(pinned: dict, got: dict, limit: int = 20) -> str:
    """The rows and fields in which `got` differs from the pinned summary, one per line."""
    diffs = [
        f"privacy.json: {d}" for d in _changed(pinned["privacy_fields"], got["privacy_fields"])
    ]
    a, b = pinned["synthetic_rows"], got["synthetic_rows"]
    if len(a) != len(b):
        diffs.append(f"synthetic.jsonl: {len(b)} rows, pinned {len(a)}")
    for i, (ra, rb) in enumerate(zip(a, b)):
        diffs += [f"synthetic.jsonl row {i}: {d}" for d in _changed(ra, rb)]
    if not diffs:
        diffs = ["no field differs: the bytes changed only in formatting or key order"]
    more = [f"... and {len(diffs) - limit} more"] if len(diffs) > limit else []
    return "\n".join(diffs[:limit] + more)


def pinned_config(tmp_path: pathlib.Path) -> C.WaspConfig:
    """The fixed-seed tiny-model run whose outputs are pinned (its task file goes in tmp_path)."""
    return C.replace(
        C.base_config(),
        **{
            "task": _tiny_task(tmp_path),
            "seed": 7,
            "data.private_path": first_private(16),  # the first 16 records
            "generation.plms": ("tiny-llama", "tiny-gemma3"),
            "embedder.name": "tiny-bert",
            "generation.budget": 16,
            "generation.rounds": 2,
            "generation.batch_size": 4,
            "generation.max_new_tokens": 8,
            "generation.min_new_tokens": 2,
            "generation.max_attempts": 2,
            "generation.num_prompt_variants": 2,
            "voting.q": 2,
            "selection.s": 2,
            "privacy.accounting": "rdp",
            # Bytes can be pinned only if the noise is reproducible: seeded noise (NOT DP).
            # Secure runs draw from a fresh secret; tests/pipeline/test_secure_noise.py pins
            # their properties instead of their bytes.
            "privacy.noise": "seeded",
            "runtime.progress": False,
        },
    )


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:round .* fewer usable samples")
def test_pinned_outputs(tmp_path):
    cfg = pinned_config(tmp_path)
    runner.run(cfg, tmp_path / "wd")
    rows = (tmp_path / "wd" / "release" / "synthetic.jsonl").read_text().splitlines()
    assert len(rows) > 0
    got = summary(tmp_path / "wd")
    syn, led = got["synthetic_sha256"], got["privacy_sha256"]
    if (syn, led) != (SYNTHETIC_SHA256, PRIVACY_SHA256):
        new = tmp_path / SUMMARY.name
        new.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
        pinned = json.loads(SUMMARY.read_text())
        pytest.fail(
            f"pinned outputs changed (digests {syn}, {led}; this run's summary: {new}):\n"
            + explain(pinned, got)
        )


def test_summary_fixture_matches_the_pinned_digests():
    pinned = json.loads(SUMMARY.read_text())
    assert pinned["synthetic_sha256"] == SYNTHETIC_SHA256
    assert pinned["privacy_sha256"] == PRIVACY_SHA256
    assert pinned["synthetic_rows"] and pinned["privacy_fields"]


def test_explain_names_the_changed_field_and_row():
    pinned = json.loads(SUMMARY.read_text())
    got = json.loads(SUMMARY.read_text())
    field = sorted(got["privacy_fields"])[0]
    got["privacy_fields"][field] = "0" * 16
    got["privacy_fields"]["brand_new"] = "1" * 16
    row_field = sorted(got["synthetic_rows"][1])[0]
    got["synthetic_rows"][1][row_field] = "2" * 16
    got["synthetic_rows"].append({"text": "3" * 16})
    text = explain(pinned, got)
    assert f"privacy.json: {field} changed" in text
    assert "privacy.json: brand_new is new" in text
    assert f"synthetic.jsonl row 1: {row_field} changed" in text
    n = len(pinned["synthetic_rows"])
    assert f"synthetic.jsonl: {n + 1} rows, pinned {n}" in text
    assert explain(pinned, pinned).startswith("no field differs")

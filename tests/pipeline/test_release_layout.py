"""The workdir's two parts and the run's secret, with the protocol fakes of test_runner.

`release/` holds what may be handed to others and nothing secret: not the run's noise secret
(raw, hex or base64) and no fingerprint of the private file. `private/` (0700) holds the
secret (0600, 32 bytes), the checkpoint and the caches. The private file's fingerprint is an
HMAC keyed with the secret. Two secure runs of one config and seed draw different noise; a
resume keeps the secret, `--force` draws a new one; a missing or damaged secret, and a
workdir of the older layout, are refused with the fix; the report rebuilds from a copy of
`release/` alone.
"""

import base64
import hashlib
import hmac
import json
import os
import pathlib
import shutil

import numpy as np
import pytest
from test_runner import Crash, hooks, small_config

from wasp_jax.errors import UsageError
from wasp_jax.outputs import datasheet, report
from wasp_jax.pipeline.run import runner, workdir
from wasp_jax.pipeline.run.secret import SECRET_FILE, SecretError, load_or_create_secret

pytestmark = pytest.mark.slow  # pipeline runs that check what each folder receives

PRIVATE = pathlib.Path(small_config().data.private_path)  # the file the runs here read
FINGERPRINT = f"private data {str(PRIVATE)!r}"


def secure_config(**changes):
    return small_config(**{"privacy.noise": "secure", **changes})


def no_finish(monkeypatch):
    monkeypatch.setattr(runner, "_finish", lambda *a: None)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two finished secure runs of one config and seed in two workdirs; the first has its
    report and datasheet."""
    a = tmp_path_factory.mktemp("a") / "wd"
    b = tmp_path_factory.mktemp("b") / "wd"
    runner.run(secure_config(), a, hooks=hooks())
    mp = pytest.MonkeyPatch()
    no_finish(mp)
    runner.run(secure_config(), b, hooks=hooks())
    mp.undo()
    return a, b


def secret_of(wd: pathlib.Path) -> bytes:
    return (wd / "private" / SECRET_FILE).read_bytes()


def state_of(wd: pathlib.Path) -> dict:
    return json.loads((wd / "private" / "checkpoint" / "state.json").read_text())


def votes_of(wd: pathlib.Path, t: int = 1) -> np.ndarray:
    return np.load(wd / "private" / "checkpoint" / f"votes_r{t}.npy")


def mode(path: pathlib.Path) -> int:
    return path.stat().st_mode & 0o777


def test_private_part_is_closed_and_release_holds_the_outputs(two_runs):
    a, b = two_runs
    for wd in (a, b):
        assert sorted(p.name for p in wd.iterdir()) == [".wasp-jax.lock", "private", "release"]
        assert mode(wd / "private") == 0o700
        secret = wd / "private" / SECRET_FILE
        assert mode(secret) == 0o600 and len(secret.read_bytes()) == 32
        private = {p.name for p in (wd / "private").iterdir()}
        assert {workdir.MARKER, SECRET_FILE, "checkpoint"} <= private
    release = {p.name for p in (a / "release").iterdir()}
    assert release == {"config.json", "synthetic.jsonl", "privacy.json", "method.json",
                       "metrics.jsonl", "datasheet.md", "README.md", "report.md",
                       "plots"}  # fmt: skip
    assert datasheet.SHARING in (a / "release" / "datasheet.md").read_text()


def test_nothing_outside_private_holds_the_secret_or_a_digest_of_the_private_file(two_runs):
    plain = hashlib.sha256(PRIVATE.read_bytes()).hexdigest()
    for wd in two_runs:
        secret = secret_of(wd)
        keyed = hmac.new(secret, PRIVATE.read_bytes(), hashlib.sha256).hexdigest()
        needles = [secret, secret.hex().encode(), secret.hex().upper().encode(),
                   base64.b64encode(secret), plain.encode(), keyed.encode()]  # fmt: skip
        files = [p for p in wd.rglob("*") if p.is_file()]
        outside = [p for p in files if p.relative_to(wd).parts[0] != "private"]
        assert len(outside) >= 5
        for path in outside:
            data = path.read_bytes()
            assert not [n for n in needles if n in data], path
        # the plain digest is nowhere, not even in the private part
        assert not [p for p in files if plain.encode() in p.read_bytes()]


def test_private_fingerprint_is_an_hmac_keyed_with_the_secret(two_runs):
    a, b = two_runs
    plain = hashlib.sha256(PRIVATE.read_bytes()).hexdigest()
    got = {}
    for wd in (a, b):
        stored = state_of(wd)["fingerprints"][FINGERPRINT]
        want = hmac.new(secret_of(wd), PRIVATE.read_bytes(), hashlib.sha256).hexdigest()
        assert stored == want and stored != plain
        got[wd] = stored
    assert got[a] != got[b]  # another secret, another fingerprint of the same file


def test_two_secure_runs_with_one_seed_draw_different_noise(two_runs):
    a, b = two_runs
    assert secret_of(a) != secret_of(b)
    rows = [
        [json.loads(x) for x in (wd / "release" / "synthetic.jsonl").read_text().splitlines()]
        for wd in (a, b)
    ]
    zero_shot = [[r for r in rs if r["round"] == 0] for rs in rows]
    assert zero_shot[0] == zero_shot[1]  # public choices follow the seed: the same candidates
    va, vb = votes_of(a), votes_of(b)
    assert va.shape == vb.shape and va.shape[1] == len(zero_shot[0])
    assert np.mean(va != vb) > 0.9, (va, vb)  # the same clean votes, other noise
    summaries = [
        json.loads((wd / "release" / "metrics.jsonl").read_text().splitlines()[1]) for wd in (a, b)
    ]
    assert summaries[0]["noisy_vote_summary"] != summaries[1]["noisy_vote_summary"]


def test_resume_keeps_the_secret_and_force_draws_a_new_one(tmp_path, monkeypatch):
    no_finish(monkeypatch)
    wd = tmp_path / "w"

    def boom(event):
        if event == "r2/vote:start":
            raise Crash(event)

    with pytest.raises(Crash):
        runner.run(secure_config(), wd, hooks=hooks(boom))
    secret, votes = secret_of(wd), votes_of(wd)
    fingerprint = state_of(wd)["fingerprints"][FINGERPRINT]
    res = runner.run(secure_config(), wd, hooks=hooks())
    assert res.resumed_stages > 0 and secret_of(wd) == secret
    np.testing.assert_array_equal(votes_of(wd), votes)
    assert state_of(wd)["fingerprints"][FINGERPRINT] == fingerprint
    ledger = json.loads((wd / "release" / "privacy.json").read_text())
    assert ledger["rounds_released"] == 2 and ledger["private"] is True
    res = runner.run(secure_config(), wd, force=True, hooks=hooks())
    assert res.resumed_stages == 0 and secret_of(wd) != secret
    assert mode(wd / "private" / SECRET_FILE) == 0o600 and mode(wd / "private") == 0o700
    assert np.mean(votes_of(wd) != votes) > 0.9
    assert state_of(wd)["fingerprints"][FINGERPRINT] != fingerprint


@pytest.mark.parametrize("damage", ["missing", "short", "long", "folder"])
def test_missing_or_damaged_secret_stops_a_resume(damage, tmp_path, monkeypatch):
    no_finish(monkeypatch)
    wd = tmp_path / "w"

    def boom(event):
        if event == "r1/vote:start":
            raise Crash(event)

    with pytest.raises(Crash):
        runner.run(secure_config(), wd, hooks=hooks(boom))
    path = wd / "private" / SECRET_FILE
    path.unlink()
    if damage == "short":
        path.write_bytes(b"\0" * 5)
    elif damage == "long":
        path.write_bytes(b"\0" * 40)
    elif damage == "folder":
        path.mkdir()
    state = (wd / "private" / "checkpoint" / "state.json").read_bytes()
    with pytest.raises(SecretError) as info:
        runner.run(secure_config(), wd, hooks=hooks())
    msg = str(info.value)
    assert isinstance(info.value, UsageError) and "\n" not in msg
    assert "noise secret" in msg and "--force" in msg and str(path) in msg
    want = {"missing": "is missing", "short": "holds 5 bytes", "long": "more than 32",
            "folder": "not a regular file"}[damage]  # fmt: skip
    assert want in msg
    assert (wd / "private" / "checkpoint" / "state.json").read_bytes() == state
    runner.run(secure_config(), wd, force=True, hooks=hooks())
    assert len(secret_of(wd)) == 32


def test_load_or_create_secret(tmp_path):
    folder = tmp_path / "p"
    folder.mkdir(mode=0o700)
    with pytest.raises(SecretError, match="is missing"):
        load_or_create_secret(folder, must_exist=True)
    first = load_or_create_secret(folder)
    assert len(first) == 32 and mode(folder / SECRET_FILE) == 0o600
    assert load_or_create_secret(folder) == first
    assert load_or_create_secret(folder, must_exist=True) == first
    assert sorted(os.listdir(folder)) == [SECRET_FILE]  # no temp file left behind
    (folder / SECRET_FILE).chmod(0o644)  # loosened by hand: closed again on the next read
    assert load_or_create_secret(folder) == first and mode(folder / SECRET_FILE) == 0o600
    other = tmp_path / "q"
    other.mkdir()
    assert load_or_create_secret(other) != first
    (other / SECRET_FILE).unlink()
    (other / SECRET_FILE).symlink_to(folder / SECRET_FILE)
    with pytest.raises(SecretError, match="not a regular file"):
        load_or_create_secret(other)


def test_old_layout_is_refused_untouched_and_force_clears_it(tmp_path, monkeypatch):
    no_finish(monkeypatch)
    wd = tmp_path / "old"
    for folder in ("checkpoint", "plots", "embed_cache"):
        (wd / folder).mkdir(parents=True)
    (wd / workdir.MARKER).write_text('{"tool": "wasp-jax", "format": 1}\n')
    (wd / "config.json").write_text(secure_config().to_json() + "\n")
    (wd / "checkpoint" / "state.json").write_text('{"version": 2}')
    (wd / "synthetic.jsonl").write_text('{"text": "old"}\n')
    (wd / "plots" / "class_balance.png").write_bytes(b"png")
    (wd / "notes.txt").write_text("mine")
    before = {p: p.read_bytes() for p in wd.rglob("*") if p.is_file()}
    with pytest.raises(workdir.WorkdirConfigError) as info:
        runner.run(secure_config(), wd, hooks=hooks())
    msg = str(info.value)
    assert "older wasp-jax layout" in msg and "new --workdir" in msg and "--force" in msg
    after = {p: p.read_bytes() for p in wd.rglob("*") if p.is_file()}
    assert {p: v for p, v in after.items() if p.name != ".wasp-jax.lock"} == before
    runner.run(secure_config(), wd, force=True, hooks=hooks())
    names = sorted(p.name for p in wd.iterdir())
    assert names == [".wasp-jax.lock", "notes.txt", "private", "release"]
    assert (wd / "notes.txt").read_text() == "mine"
    # the new layout resumes as usual
    assert runner.run(secure_config(), wd, hooks=hooks()).resumed_stages > 0


def test_report_rebuilds_from_a_copy_of_release_alone(two_runs, tmp_path):
    a, _ = two_runs
    copy = tmp_path / "handed_over"
    shutil.copytree(a / "release", copy)
    for name in ("report.md", "datasheet.md"):
        (copy / name).unlink()
    shutil.rmtree(copy / "plots")
    assert datasheet.write_datasheet(copy) == copy / "datasheet.md"
    assert report.write_report(copy) == copy / "report.md"
    for name in ("report.md", "datasheet.md"):
        assert (copy / name).read_text() == (a / "release" / name).read_text(), name
    assert sorted(p.name for p in (copy / "plots").iterdir()) == sorted(
        p.name for p in (a / "release" / "plots").iterdir()
    )

"""WASP-proto: the class-prototype release (sensitivity by brute force, lattice, noise), the
margin post-processing on known geometry, and the method through the runner (one release,
read back on every later round and on resume)."""

import json
import math
import pathlib

import chex
import jax
import numpy as np
import pytest
from pipeline_fakes import loaders

from tests.private_files import first_private
from wasp_jax import config as C
from wasp_jax.pipeline import methods
from wasp_jax.pipeline.run import runner
from wasp_jax.pipeline.stages import prototypes
from wasp_jax.pipeline.stages.vote_plus import aggregate_and_noise
from wasp_jax.privacy.noise_source import NoiseSource
from wasp_jax.privacy.release_kinds import kind_sensitivity

KIND = "class_prototypes"


def _unit_rows(rng, n, d):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _release(emb, labels, *, sigma=0.0, adjacency="add_remove", num_classes=3, seed=0):
    syn = _unit_rows(np.random.default_rng(99), 6, emb.shape[1])
    out = aggregate_and_noise(
        NoiseSource.seeded(seed),
        emb,
        labels,
        syn,
        np.arange(6, dtype=np.int32) % num_classes,
        q=1,
        sigmas={KIND: sigma},
        adjacency=adjacency,
        num_classes=num_classes,
    )
    return np.asarray(out.released[KIND], np.float64), out


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("adjacency", ["add_remove", "replace_one"])
def test_prototype_sensitivity_holds_over_every_neighbour(adjacency, jit):
    """Brute force over the neighbours of a small private set: no removal (add/remove) or
    replacement by any record of any class (replace-one) moves the release by more than the
    derived sensitivity, and the worst case comes close to it."""
    rng = np.random.default_rng(1)
    emb, labels = _unit_rows(rng, 8, 5), rng.integers(0, 3, 8).astype(np.int32)
    others = _unit_rows(rng, 6, 5)
    sens = kind_sensitivity(KIND, adjacency=adjacency)
    assert sens == (2.0 if adjacency == "replace_one" else 1.0)

    def release(e, y):
        if jit:
            return _release(e, y, adjacency=adjacency)[0]
        with jax.disable_jit():
            return _release(e, y, adjacency=adjacency)[0]

    base, worst = release(emb, labels), 0.0
    for i in range(len(labels)):
        if adjacency == "add_remove":
            neighbours = [(np.delete(emb, i, 0), np.delete(labels, i))]
        else:
            neighbours = []
            for j in range(len(others)):
                for c in range(3):
                    e, y = emb.copy(), labels.copy()
                    e[i], y[i] = -emb[i] if j == 0 else others[j], c
                    neighbours.append((e, y))
        for e, y in neighbours:
            worst = max(worst, float(np.linalg.norm(base - release(e, y))))
    assert worst <= sens + 1e-6
    assert worst >= 0.95 * sens  # the bound is reached, up to the clipping margin


def test_prototypes_are_noised_on_their_lattice():
    rng = np.random.default_rng(2)
    emb, labels = _unit_rows(rng, 30, 8), (np.arange(30) % 3).astype(np.int32)
    clean, _ = _release(emb, labels)
    chex.assert_shape(clean, (3, 8))
    np.testing.assert_allclose(clean, [emb[labels == c].sum(0) for c in range(3)], atol=0.02)
    noisy, out = _release(emb, labels, sigma=1.0)
    step = out.steps[KIND]
    units = noisy / step
    np.testing.assert_array_equal(units, np.round(units))
    assert np.std(noisy - clean) == pytest.approx(1.0, rel=0.35)  # sigma 1 on 24 values
    assert out.ledger[0][:3] == (KIND, 1.0, 1.0)


def test_margins_on_known_geometry():
    protos = np.array([[2.0, 0.0], [0.0, 3.0], [0.0, 0.0]])  # class 2 has a zero sum
    emb = np.array([[1.0, 0.0], [1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    labels = np.array([0, 1, 1, 2])
    got = prototypes.margins(emb, labels, protos)
    chex.assert_trees_all_close(got, np.array([1.0, -1.0, 0.8 - 0.6, 0.0 - 1.0]))
    mask = np.ones(4, bool)
    good, bad = prototypes.good_bad(got, labels, mask, 3, s=1)
    assert good == [[0], [2], [3]] and bad == [[], [1], []]  # bad is disjoint from good
    scores = prototypes.plm_margin_scores(got, np.array([0, 0, 1, 1]), mask, 3)
    chex.assert_trees_all_close(scores, np.array([0.0, -0.4, 0.0]))
    summary = prototypes.summary(got, labels, mask, 3)
    assert summary["prototype_agreement"] == [1.0, 0.5, 0.0]


def _proto_config(**changes):
    base = {
        "method": "wasp_proto",
        "data.private_path": first_private(24),
        "generation.plms": ("fake-a", "fake-b"),
        "generation.budget": 36,
        "generation.rounds": 2,
        "generation.batch_size": 8,
        "selection.s": 2,
        "runtime.progress": False,
        "privacy.epsilon": 2.0,
        "proto.dims": 4,
    }
    base.update(changes)
    return C.replace(C.base_config(), **base)


@pytest.mark.slow
def test_wasp_proto_releases_once_and_reads_it_back(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "_finish", lambda *a: None)
    g, e = loaders()
    drawn = []
    real = aggregate_and_noise
    from wasp_jax.pipeline.methods import wasp_proto

    monkeypatch.setattr(
        wasp_proto, "aggregate_and_noise", lambda *a, **k: drawn.append(1) or real(*a, **k)
    )
    hooks = runner.Hooks(load_generator=g, load_embedder=e)
    cfg = _proto_config()
    plan = methods.privacy_plan(cfg)
    assert plan.releases == (KIND,) and plan.rounds == 1 and plan.l2_sensitivity == 1.0
    res = runner.run(cfg, tmp_path, hooks=hooks)
    assert drawn == [1]  # round 1 drew it, round 2 read it back
    ledger = json.loads((res.release / "privacy.json").read_text())
    assert [(r["round"], r["what"]) for r in ledger["releases"]] == [(1, [KIND])]
    assert 0 < ledger["epsilon_spent"] <= 2.0 + 1e-9
    saved = np.load(next(pathlib.Path(tmp_path).glob(f"private/checkpoint/{KIND}.npy")))
    chex.assert_shape(saved, (2, 4))  # 2 classes x proto.dims
    space = np.load(next(pathlib.Path(tmp_path).glob("private/checkpoint/prototype_space.npy")))
    chex.assert_shape(space, (5, 32))  # the mean, then 4 directions of the embedder's width
    metrics = [json.loads(x) for x in (res.release / "metrics.jsonl").read_text().splitlines()]
    for row in metrics[1:]:
        assert len(row["noisy_vote_summary"]["prototype_agreement"]) == 2
        good, bad = row["selected"]["good"], row["selected"]["bad"]
        assert all(not set(g) & set(b) for g, b in zip(good, bad))
    again = runner.run(cfg, tmp_path, hooks=hooks, force=False)
    assert drawn == [1] and again.epsilon_spent == res.epsilon_spent
    assert math.isclose(again.epsilon_spent, ledger["epsilon_spent"])


def test_wasp_proto_refuses_what_it_does_not_account():
    for change in (
        {"privacy.accounting": "classic"},
        {"privacy.sensitivity_override": 3.0},
        {"data.num_parties": 2},
    ):
        with pytest.raises(C.ConfigError, match="accounted with RDP"):
            methods.privacy_plan(_proto_config(**change))


class _TableEmbedder:
    """Embeds a text as the row of a fixed table (the text names its row)."""

    def __init__(self, table):
        self.table = np.asarray(table, np.float32)

    def embed(self, texts, progress=False, cache=False, split=False):
        return self.table[[int(t.split()[-1]) for t in texts]]


def _keep_inputs(table):
    from types import SimpleNamespace

    cfg = C.replace(C.base_config(), **{"runtime.progress": False})
    embedder = _TableEmbedder(table)
    return SimpleNamespace(cfg=cfg, writer=False, models=SimpleNamespace(embedder=lambda: embedder))


@pytest.mark.parametrize("drop", [False, True])
def test_oversampling_keeps_the_top_margins_of_each_class(drop):
    """Known geometry: prototypes on the two axes; each class keeps its quota of highest
    margin, in generation order, and counts what it left out; with the class check the rows
    nearer the other prototype go even when the class is left short."""
    from wasp_jax.pipeline.methods import wasp_proto
    from wasp_jax.pipeline.run.results import Drawn

    protos = np.eye(2, dtype=np.float32)
    angles = np.array([0.1, 1.2, 0.5, 0.9, 1.5, 0.3])  # radians from class 0's axis
    table = np.stack([np.cos(angles), np.sin(angles)], 1)
    # class 0 gets rows 0..3 (margins cos - sin), class 1 rows 4, 5 (sin - cos)
    drawn = Drawn(
        plm=0,
        plm_name="p",
        round=1,
        texts=(("t 0", "t 1", "t 2", "t 3"), ("t 4", "t 5")),
        filtered={"duplicate": 1},
    )
    out = wasp_proto.keep_by_margin(_keep_inputs(table), drawn, [2, 2], protos, drop)
    assert out.texts[0] == ("t 0", "t 2")  # margins 0.89, 0.40 beat -0.58, -0.16
    assert out.texts[1] == (("t 4",) if drop else ("t 4", "t 5"))  # row 5 is nearer class 0
    assert out.filtered["duplicate"] == 1
    assert out.filtered[wasp_proto.NOT_TOP] == (0 if drop else 2)
    assert out.shortfall == (1 if drop else 0)
    if drop:
        assert out.filtered[wasp_proto.OTHER_CLASS] == 3  # t 1, t 3 and t 5


@pytest.mark.slow
def test_wasp_proto_oversampling_through_the_runner(tmp_path, monkeypatch):
    """Oversampling keeps each round's budget, spends nothing more, and counts the dropped."""
    monkeypatch.setattr(runner, "_finish", lambda *a: None)
    g, e = loaders()
    hooks = runner.Hooks(load_generator=g, load_embedder=e)
    cfg = _proto_config(**{"proto.oversample": 3})
    plain = runner.run(_proto_config(), tmp_path / "plain", hooks=hooks)
    res = runner.run(cfg, tmp_path / "over", hooks=hooks)
    assert res.n_synthetic == plain.n_synthetic == 36
    assert math.isclose(res.epsilon_spent, plain.epsilon_spent)
    metrics = [json.loads(x) for x in (res.release / "metrics.jsonl").read_text().splitlines()]
    dropped = [m["filtered"].get("below_top_margin", 0) for m in metrics[1:]]
    assert all(n > 0 for n in dropped)
    with pytest.raises(C.ConfigError, match="proto.oversample"):
        _proto_config(**{"proto.oversample": 0})
    with pytest.raises(C.ConfigError, match="proto.dims"):
        methods.privacy_plan(_proto_config(**{"proto.dims": 12}))  # round 0 has 12 rows


def test_public_subspace_and_projection():
    """The subspace is the public rows' mean and top principal directions, orthonormal; a
    projected row has unit norm and keeps the component along the dominant direction."""
    rng = np.random.default_rng(3)
    axis = np.zeros(6)
    axis[2] = 1.0
    public = rng.standard_normal((40, 6)) * 0.05 + np.outer(rng.standard_normal(40) * 3, axis)
    space = prototypes.public_subspace(public, 2)
    chex.assert_shape(space, (3, 6))
    np.testing.assert_allclose(space[0], public.mean(0), atol=1e-6)
    np.testing.assert_allclose(space[1:] @ space[1:].T, np.eye(2), atol=1e-5)
    np.testing.assert_allclose(space[1], axis, atol=0.05)  # the dominant direction, sign fixed
    z = prototypes.project(public[:5], space)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    assert prototypes.project(public[:5], None).shape == (5, 6)
    with pytest.raises(ValueError, match="proto.dims"):
        prototypes.public_subspace(public[:3], 4)

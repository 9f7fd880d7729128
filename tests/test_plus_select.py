"""WASP+ post-processing: clusters, picks, budget shares, cluster quotas and sample weights."""

import numpy as np
import pytest

from tests.kernels._reference import unit_rows
from wasp_jax.pipeline.methods import wasp_plus
from wasp_jax.pipeline.stages import plus_select


def _data(seed=0, n=120, d=5):
    rng = np.random.default_rng(seed)
    return unit_rows(rng, n, d), (np.arange(n) % 2).astype(np.int32), rng


def test_class_clusters_stay_inside_their_class_and_are_seeded():
    emb, labels, _ = _data()
    mask = np.ones(len(labels), bool)
    ids, centres = plus_select.class_clusters(emb, labels, mask, per_class=4, num_classes=2,
                                              seed=3)  # fmt: skip
    assert centres.shape == (8, emb.shape[1])
    assert np.all(ids // 4 == labels)
    again, _ = plus_select.class_clusters(emb, labels, mask, per_class=4, num_classes=2, seed=3)
    np.testing.assert_array_equal(ids, again)


def test_cluster_picks_follow_the_noisy_totals():
    emb, labels, _ = _data(1)
    mask = np.ones(len(labels), bool)
    ids, centres = plus_select.class_clusters(emb, labels, mask, per_class=3, num_classes=2,
                                              seed=0)  # fmt: skip
    totals = np.array([0.0, 9.0, 1.0, 5.0, 0.0, -2.0])
    picks = plus_select.cluster_picks(totals, ids, centres, emb, labels, mask, s=3,
                                      num_classes=2, per_class=3)  # fmt: skip
    assert all(len(p) == 3 for p in picks)
    assert set(ids[picks[0]]) == {1} and set(ids[picks[1]]) == {3}
    # within the cluster, the members nearest its centre come first
    rows = np.flatnonzero(ids == 1)
    d2 = ((emb[rows] - centres[1]) ** 2).sum(1)
    assert picks[0] == rows[np.argsort(d2)[:3]].tolist()


def test_shares_quotas_and_weights():
    shares = plus_select.useful_shares([80.0, 70.0, 75.0], temperature=5.0)
    assert shares.sum() == pytest.approx(1.0) and shares.argmax() == 0
    assert plus_select.useful_shares([1.0, 1.0], temperature=2.0) == pytest.approx([0.5, 0.5])
    assert wasp_plus.cluster_quotas([3.0, 1.0, -5.0], 8) == [6, 2, 0]
    assert sum(wasp_plus.cluster_quotas([-1.0, -1.0], 5)) == 5  # none positive: uniform
    w = plus_select.cluster_weights([4.0, 0.0, -1.0], np.array([0, 0, 1, 2, 2]))
    assert w.mean() == pytest.approx(1.0) and w[0] == w[1] > w[2] == w[3] == w[4] > 0
    assert np.all(plus_select.cluster_weights([-1.0], np.zeros(3, int)) == 1.0)


def test_probe_params_fit_each_plm_on_its_own_rows():
    emb, labels, rng = _data(2, n=200)
    emb = emb + np.where(labels[:, None] == 1, 1.0, -1.0) * np.eye(5)[0]
    plm = rng.integers(0, 2, 200).astype(np.int32)
    plm[:40] = 2
    labels_k2 = labels.copy()
    labels_k2[:40] = 0  # PLM 2 wrote one class only: a constant probe
    k, b = plus_select.probe_params(emb, labels_k2, plm, None, num_plms=3, num_classes=2)
    pred = (np.einsum("md,kdc->kmc", emb, k) + b[:, None]).argmax(-1)
    assert (pred[0] == labels).mean() > 0.9 and np.all(pred[2] == 0)

"""STM: weighted loss, training, early stopping, save/restore, metrics, evaluate (the linear
probe itself: tests/test_probe.py).

Models are tiny-bert, so the file runs in seconds on a CPU.
"""

import json
import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import wasp_jax.cli.evaluate as evaluate_cli
from wasp_jax import cli, stm
from wasp_jax.errors import DataError, DataWarning, UsageError
from wasp_jax.stm import evaluate

POS = ["great movie", "i loved it", "wonderful acting", "amazing story", "best film ever",
       "so fun and good", "excellent plot", "beautiful scenes"]  # fmt: skip
NEG = ["terrible movie", "i hated it", "awful acting", "boring story", "worst film ever",
       "so dull and bad", "stupid plot", "a weak mess"]  # fmt: skip
TEXTS, LABELS = POS + NEG, [1] * 8 + [0] * 8
CFG = stm.STMConfig(
    encoder="tiny-bert", learning_rate=3e-3, epochs=8, batch_size=4, val_fraction=0.0,
    dropout=False, warmup_ratio=0.05,
)  # fmt: skip


def _mean_loss(clf, texts, labels):
    logits = clf.predict_logits(texts)
    return float(jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels)))


@pytest.fixture(scope="module")
def trained():
    start = stm.build_classifier(2, CFG, rng=np.random.default_rng(0))
    before = _mean_loss(start, TEXTS, np.array(LABELS))
    clf, info = stm.train_classifier(
        TEXTS, LABELS, num_classes=2, key=jax.random.key(0), config=CFG, classifier=start
    )
    return clf, info, before


def test_weighted_loss_unit_weights_equal_plain_mean():
    logits = jax.random.normal(jax.random.key(0), (6, 3))
    labels = jnp.array([0, 1, 2, 1, 0, 2])
    plain = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    ones, valid = jnp.ones(6), jnp.ones(6, bool)
    chex.assert_trees_all_close(stm.weighted_loss(logits, labels, ones, valid), plain, rtol=1e-6)
    pad_logits = jnp.concatenate([logits, 9 * jnp.ones((2, 3))])
    pad_labels = jnp.concatenate([labels, jnp.zeros(2, int)])
    padded = stm.weighted_loss(pad_logits, pad_labels, jnp.ones(8), jnp.arange(8) < 6)
    chex.assert_trees_all_close(padded, plain, rtol=1e-6)
    chex.assert_trees_all_close(stm.weighted_loss(logits, labels, 2 * ones, valid), 2 * plain)


def test_learning_rate_schedule():
    lrs = [float(stm.learning_rate(s, peak=1.0, warmup=4, total=12)) for s in range(12)]
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0]
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:])) and 0 < lrs[-1] < 0.2


def test_training_lowers_loss_and_fits_separable_set(trained):
    clf, info, before = trained
    after = _mean_loss(clf, TEXTS, np.array(LABELS))
    assert after < 0.5 * before
    assert info["history"][-1]["train_loss"] < info["history"][0]["train_loss"]
    assert (clf.predict(TEXTS) == np.array(LABELS)).mean() == 1.0
    held_out = ["loved the acting", "awful and boring", "amazing plot", "worst mess"]
    assert (clf.predict(held_out) == np.array([1, 0, 1, 0])).mean() >= 0.75


@pytest.mark.filterwarnings("ignore:the STM validation split holds only")
def test_early_stopping_restores_best_state():
    # validation labels are the training labels flipped: fitting the training set makes the
    # validation loss rise, so the best state is an early one and must be restored
    cfg = stm.STMConfig(**{**CFG.__dict__, "epochs": 6, "patience": 2})
    clf, info = stm.train_classifier(
        TEXTS, LABELS, num_classes=2, key=jax.random.key(1), config=cfg,
        val_texts=TEXTS, val_labels=[1 - y for y in LABELS],
    )  # fmt: skip
    val_losses = [h["val_loss"] for h in info["history"]]
    assert info["stopped_early"] and len(val_losses) < 6
    assert info["best_epoch"] == 1 + int(np.argmin(val_losses)) < len(val_losses)
    restored = _mean_loss(clf, TEXTS, np.array([1 - y for y in LABELS]))
    np.testing.assert_allclose(restored, min(val_losses), rtol=1e-5)
    assert restored < val_losses[-1]


def test_tiny_validation_split_warns_and_val_fraction_zero_does_not():
    cfg = stm.STMConfig(**{**CFG.__dict__, "epochs": 1, "val_fraction": 0.25})
    with pytest.warns(DataWarning, match="validation split holds only 4 texts"):
        _, info = stm.train_classifier(
            TEXTS, LABELS, num_classes=2, key=jax.random.key(2), config=cfg
        )
    assert info["num_val"] == 4 < stm.MIN_RELIABLE_VAL
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        _, info = stm.train_classifier(
            TEXTS, LABELS, num_classes=2, key=jax.random.key(2), config=CFG
        )
    assert info["num_val"] == 0


def test_save_restore_same_predictions(trained, tmp_path):
    clf = trained[0]
    clf.save(tmp_path / "stm")
    back = stm.Classifier.load(tmp_path / "stm")
    assert back.num_classes == 2 and back.config == clf.config
    np.testing.assert_allclose(back.predict_logits(TEXTS), clf.predict_logits(TEXTS), atol=1e-6)


def test_bad_labels():
    with pytest.raises(ValueError, match="labels must lie"):
        stm.train_classifier(["a", "b"], [0, 5], num_classes=2, key=jax.random.key(0), config=CFG)


@pytest.mark.slow
def test_data_parallel_mesh_matches_single_device():
    if jax.device_count() < 8:
        pytest.skip("needs 8 (fake) devices")
    mesh = jax.make_mesh((4, 2), ("data", "model"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
    cfg = stm.STMConfig(**{**CFG.__dict__, "epochs": 1})
    outs = []
    for m in (None, mesh):
        start = stm.build_classifier(2, cfg, rng=np.random.default_rng(0), mesh=m)
        clf, _ = stm.train_classifier(
            TEXTS, LABELS, num_classes=2, key=jax.random.key(2), config=cfg, classifier=start
        )
        outs.append(clf.predict_logits(TEXTS))
    np.testing.assert_allclose(outs[1], outs[0], atol=2e-4)


def _write_jsonl(path, texts, labels, names=("negative", "positive")):
    rows = [{"text": t, "label": y, "label_name": names[y]} for t, y in zip(texts, labels)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_evaluate_probe_cli_writes_results(tmp_path, capsys):
    train = _write_jsonl(tmp_path / "train.jsonl", TEXTS * 2, LABELS * 2)
    test = _write_jsonl(tmp_path / "test.jsonl", TEXTS[::3], LABELS[::3])
    out = tmp_path / "res.json"
    argv = ["evaluate", "--train", str(train), "--test", str(test), "--mode", "probe",
            "--seeds", "2", "--encoder", "tiny-bert", "--out", str(out), "--quiet"]  # fmt: skip
    assert cli.main(argv) == 0
    res = json.loads(out.read_text())
    assert res["mode"] == "probe" and res["seeds"] == [0, 1] and res["num_classes"] == 2
    assert len(res["accuracy"]["per_seed"]) == 2 and 0 <= res["accuracy"]["mean"] <= 1
    assert set(res["macro_f1"]) == {"mean", "std", "per_seed"}
    assert res["train"]["num_examples"] == 32 and res["train"]["class_counts"] == [16, 16]
    assert len(res["test"]["sha256"]) == 64 and res["label_names"] == {
        "0": "negative",
        "1": "positive",
    }
    got = capsys.readouterr()
    assert json.loads(got.out) == res  # stdout is the JSON alone: pipe it into a JSON reader
    assert "accuracy" in got.err and "wrote" in got.err
    argv = [a for a in argv if a not in ("--out", str(out), "--quiet")]
    assert cli.main(argv) == 0  # with progress lines, still only JSON on stdout
    got = capsys.readouterr()
    assert json.loads(got.out)["accuracy"] == res["accuracy"] and "seed 0:" in got.err


def test_evaluate_finetune_subset(tmp_path):
    train = _write_jsonl(tmp_path / "train.jsonl", TEXTS, LABELS)
    cfg = stm.STMConfig(**{**CFG.__dict__, "epochs": 1})
    res = evaluate.evaluate_files(train, train, seeds=[3], config=cfg, max_train=12, max_test=6)
    assert res["train"]["num_used"] == 12 and res["test"]["num_used"] == 6
    assert res["runs"][0]["seed"] == 3 and res["runs"][0]["steps"] == 3
    assert res["hyperparameters"]["epochs"] == 1 and res["accuracy"]["std"] == 0.0


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"text": "a", "label": 0}\n{"text": "b", "label": 1\n', "line 2: not valid JSON"),
        ('{"text": "a", "label": 0}\n{"label": 1}\n', "line 2: missing field\\(s\\) \\['text'\\]"),
        ('{"text": "a", "label": "pos"}\n', "line 1: label must be a non-negative int"),
        ('{"text": "a", "label": 0}\n{"text": " ", "label": 1}\n', 'line 2: "text" is empty'),
        ("", "holds no records"),
        (
            '{"text": "a", "label": 0, "label_name": "neg"}\n'
            '{"text": "b", "label": 0, "label_name": "pos"}\n',
            "line 2: label 0 has label_name='pos' but line 1 names it 'neg'",
        ),
        ('{"text": "a", "label": 0, "label_name": "positive"}\n', "label 0 is 'negative' in"),
        ('{"text": "a", "label": 0}\n{"text": "b", "label": 2}\n', "test labels \\[2\\] never"),
    ],
)
def test_evaluate_bad_input(tmp_path, content, message):
    good = _write_jsonl(tmp_path / "good.jsonl", TEXTS, LABELS)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content)
    with pytest.raises(UsageError, match=message) as info:
        evaluate.evaluate_files(good, bad, config=CFG)
    assert "\n" not in str(info.value)
    if isinstance(info.value, DataError):
        assert "test file" in str(info.value) and str(bad) in str(info.value)


def test_evaluate_reader_is_the_data_reader(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(
        '{"text": " a ", "label": 1, "label_name": "Pos"}\n\n'
        '{"text": "b", "label": 0}\n{"text": "c", "label": 1, "label_name": "pos"}\n'
    )
    texts, labels, names = evaluate.read_examples(path)
    assert texts == ["a", "b", "c"] and labels.dtype == np.int32 and labels.tolist() == [1, 0, 1]
    assert names == {1: "Pos"}
    with pytest.raises(DataError, match="does not exist"):
        evaluate.read_examples(tmp_path / "nope.jsonl", what="training")


def test_cli_modes_match_the_library():
    assert evaluate_cli.MODES == evaluate.MODES


# ------------------------------------------------------------------------------ metrics


def _brute_force_macro_f1(labels, pred, num_classes):
    """F1 = 2PR / (P + R) per class by counting example by example; 0 when undefined."""
    scores = []
    for c in range(num_classes):
        tp = sum(1 for y, p in zip(labels, pred) if y == c and p == c)
        fp = sum(1 for y, p in zip(labels, pred) if y != c and p == c)
        fn = sum(1 for y, p in zip(labels, pred) if y == c and p != c)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        scores.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return sum(scores) / num_classes


def test_macro_f1_counts_a_class_absent_from_labels_and_predictions():
    labels = np.array([0, 0, 1, 1, 1, 3])
    pred = np.array([0, 1, 1, 1, 0, 3])  # class 2: never true, never predicted
    per_class = stm.metrics.per_class_f1(labels, pred, 4)
    chex.assert_trees_all_close(per_class, np.array([0.5, 2 / 3, 0.0, 1.0]), rtol=1e-12)
    f1 = stm.macro_f1(labels, pred, 4)
    assert f1 == pytest.approx((0.5 + 2 / 3 + 0.0 + 1.0) / 4)
    # the absent class pulls the mean down: averaging over present classes only would not
    assert f1 < np.mean(per_class[[0, 1, 3]])
    assert f1 == pytest.approx(_brute_force_macro_f1(labels, pred, 4))
    assert stm.macro_f1([0, 0, 1, 1], [0, 0, 1, 1], 2) == 1.0
    assert stm.macro_f1([0, 0, 1, 1], [0, 0, 0, 0], 2) == pytest.approx((2 * 2 / 6 + 0) / 2)
    assert stm.macro_f1([0, 0], [0, 0], 3) == pytest.approx(1 / 3)


@pytest.mark.parametrize("seed", range(5))
def test_macro_f1_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    num_classes = int(rng.integers(2, 7))
    n = int(rng.integers(1, 40))
    # draw from a random subset of the classes so that some are absent from one or both
    used = rng.choice(num_classes, size=int(rng.integers(1, num_classes + 1)), replace=False)
    labels, pred = rng.choice(used, n), rng.choice(used, n)
    expected = _brute_force_macro_f1(labels.tolist(), pred.tolist(), num_classes)
    chex.assert_trees_all_close(stm.macro_f1(labels, pred, num_classes), expected, rtol=1e-12)
    assert stm.accuracy(labels, pred) == pytest.approx(np.mean(labels == pred))


def test_macro_f1_rejects_bad_input():
    with pytest.raises(ValueError, match="one prediction per label"):
        stm.macro_f1([0, 1], [0], 2)
    with pytest.raises(ValueError, match=r"must lie in \[0, 2\)"):
        stm.macro_f1([0, 2], [0, 1], 2)

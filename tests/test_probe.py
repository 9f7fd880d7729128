"""The linear probe: the L2-regularised logistic regression it claims to be, and its evaluation.

The references are Newton's method in float64 NumPy (binary and multinomial), written here;
the evaluation tests replace the encoder by a bag-of-words stand-in, so the file needs no model.
"""

import argparse
import json

import chex
import jax
import numpy as np
import pytest

from wasp_jax import cli, stm
from wasp_jax.cli.evaluate import _lengths
from wasp_jax.stm import evaluate
from wasp_jax.stm import probe as probe_lib


def _numpy_newton_logreg(x, y, c, iters=30):
    """Binary L2 logistic regression by Newton's method (the reference)."""
    xb = np.hstack([x, np.ones((len(x), 1))])
    beta = np.zeros(xb.shape[1])
    reg = np.full(xb.shape[1], 1.0 / c)
    reg[-1] = 0.0  # the bias is not penalised
    for _ in range(iters):
        p = 1 / (1 + np.exp(-xb @ beta))
        grad = xb.T @ (p - y) + reg * beta
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + np.diag(reg)
        beta -= np.linalg.solve(hess, grad)
    return beta


def _softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _numpy_objective(kernel, bias, x, y, c):
    """Summed cross-entropy + ||W||^2 / (2 c), in float64."""
    z = x @ kernel + bias
    logz = z.max(1) + np.log(np.exp(z - z.max(1, keepdims=True)).sum(1))
    return float((logz - z[np.arange(len(y)), y]).sum() + (kernel**2).sum() / (2 * c))


def _numpy_newton_softmax(x, y, num_classes, c, iters=40):
    """Multinomial L2 logistic regression by Newton's method on all d x K weights (the
    reference). The unpenalised bias is only defined up to a constant; class 0's is held at 0."""
    n, d = x.shape
    xb = np.hstack([x, np.ones((n, 1))])
    onehot = np.eye(num_classes)[y]
    beta = np.zeros((d + 1, num_classes))
    reg = np.full((d + 1, num_classes), 1.0 / c)
    reg[-1] = 0.0
    free = np.ones((d + 1) * num_classes, bool)
    free[d * num_classes] = False  # the bias of class 0
    for _ in range(iters):
        p = _softmax(xb @ beta)
        grad = (xb.T @ (p - onehot) + reg * beta).ravel()
        s = np.einsum("ik,km->ikm", p, np.eye(num_classes)) - np.einsum("ik,im->ikm", p, p)
        hess = np.einsum("ij,il,ikm->jklm", xb, xb, s)
        hess = hess.reshape((d + 1) * num_classes, -1) + np.diag(reg.ravel())
        step = np.zeros_like(grad)
        step[free] = np.linalg.solve(hess[np.ix_(free, free)], grad[free])
        beta -= step.reshape(beta.shape)
    return beta[:-1], beta[-1]


# The tests share two problem shapes, so the jitted fit compiles only twice.
N3, D3 = 240, 6  # three classes
N2, D2 = 400, 24  # two classes (and the evaluation tests' training set)


def _three_classes(spread, rows=N3, seed=3):
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(3).normal(size=(3, D3))
    y = rng.integers(0, 3, rows).astype(np.int32)
    return (centers[y] + spread * rng.normal(size=(rows, D3))).astype(np.float32), y


def test_probe_on_separable_features():
    x, y = _three_classes(0.3)
    x_test, y_test = _three_classes(0.3, seed=4)
    probe, info = stm.train_probe(x, y, num_classes=3, key=jax.random.key(0))
    assert info["num_train"] == N3 and info["grad_norm"] < 1e-4
    assert (probe.predict(x_test) == y_test).mean() > 0.95
    # 60 % of class 0 relabelled 1: zero weight on those rows must undo the damage
    noisy = y.copy()
    flip = (noisy == 0) & (np.random.default_rng(0).random(N3) < 0.6)
    noisy[flip] = 1
    plain, _ = stm.train_probe(x, noisy, num_classes=3, key=jax.random.key(0))
    weighted, _ = stm.train_probe(
        x, noisy, num_classes=3, key=jax.random.key(0), weights=(~flip).astype(float)
    )
    acc_plain = (plain.predict(x_test) == y_test).mean()
    assert (weighted.predict(x_test) == y_test).mean() > max(0.95, acc_plain + 0.1)


@pytest.mark.parametrize("c", [0.1, 1.0, 10.0])
def test_probe_is_the_standard_l2_logistic_regression(c):
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(N2, D2)) * 0.3).astype(np.float32)
    y = (x[:, 0] - x[:, 1] + 0.3 * rng.normal(size=N2) > 0).astype(np.int32)  # not separable
    probe, info = stm.train_probe(x, y, num_classes=2)
    beta = _numpy_newton_logreg(x.astype(np.float64), y, 1.0)
    # a 2-class softmax is a logistic regression on the logit difference
    diff_w = probe.kernel[:, 1] - probe.kernel[:, 0]
    diff_b = probe.bias[1] - probe.bias[0]
    probe_c, _ = stm.train_probe(x, y, num_classes=2, c=c)
    if c == 1.0:
        chex.assert_trees_all_close(diff_w, beta[:-1].astype(np.float32), atol=2e-3, rtol=2e-3)
        chex.assert_trees_all_close(diff_b, np.float32(beta[-1]), atol=2e-3)
    beta_c = _numpy_newton_logreg(x.astype(np.float64), y, c)
    got = probe_c.kernel[:, 1] - probe_c.kernel[:, 0]
    chex.assert_trees_all_close(got, beta_c[:-1].astype(np.float32), atol=2e-3, rtol=2e-3)
    # the multinomial objective's gradient, computed here in NumPy, vanishes at its fit
    z = x @ probe_c.kernel + probe_c.bias
    resid = _softmax(z) - np.eye(2)[y]
    g_w = x.T @ resid + probe_c.kernel / (c / 2)  # two classes: the doubled penalty
    g_b = resid.sum(0)
    assert np.abs(g_w).max() < 1e-2 and np.abs(g_b).max() < 1e-2, (np.abs(g_w).max(), g_b)
    pred_ref = np.hstack([x, np.ones((N2, 1))]) @ beta_c > 0
    assert (probe_c.predict(x) == pred_ref).mean() > 0.99


@pytest.mark.parametrize("spread,c", [(0.3, 1.0), (1.5, 1.0), (1.5, 0.1)])
def test_multinomial_probe_matches_numpy_newton(spread, c):
    """Separable (spread 0.3) and overlapping classes: the same weights, loss and predictions
    as the float64 Newton solution of the same objective."""
    x, y = _three_classes(spread)
    probe, info = stm.train_probe(x, y, num_classes=3, c=c)
    kernel, bias = _numpy_newton_softmax(x.astype(np.float64), y, 3, c)
    chex.assert_trees_all_close(probe.kernel, kernel.astype(np.float32), atol=2e-3, rtol=2e-3)
    centred = probe.bias - probe.bias.mean()
    chex.assert_trees_all_close(centred, (bias - bias.mean()).astype(np.float32), atol=2e-3)
    want = _numpy_objective(kernel, bias, x.astype(np.float64), y, c)
    got = _numpy_objective(probe.kernel.astype(np.float64), probe.bias, x, y, c)
    assert 0 <= got - want < 1e-5 * want, (got, want)
    assert np.isclose(info["final_loss"], want / len(y), rtol=1e-5)
    np.testing.assert_array_equal(probe.predict(x), (x @ kernel + bias).argmax(1))
    if spread == 1.5:
        assert 0.6 < (probe.predict(x) == y).mean() < 0.99  # really not separable


def test_probe_weights_are_rescaled_and_the_key_is_unused():
    x, y = _three_classes(1.5)
    plain, _ = stm.train_probe(x, y, num_classes=3, key=jax.random.key(0))
    scaled, _ = stm.train_probe(x, y, num_classes=3, key=jax.random.key(7), weights=np.full(N3, 3))
    chex.assert_trees_all_close(scaled.kernel, plain.kernel, atol=1e-5)
    with pytest.raises(ValueError, match="c must be > 0"):
        stm.train_probe(x, y, num_classes=3, c=0.0)


class ProbeObjectiveTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_objective_matches_numpy(self):
        rng = np.random.default_rng(2)
        x = rng.normal(size=(50, 8)).astype(np.float32)
        y = rng.integers(0, 3, 50).astype(np.int32)
        w = rng.random(50).astype(np.float32)
        kernel = rng.normal(size=(8, 3)).astype(np.float32)
        bias = rng.normal(size=3).astype(np.float32)
        objective = self.variant(probe_lib.probe_objective, static_argnames=("c",))
        got = objective((kernel, bias), x, y, w, c=2.0)
        z = x @ kernel + bias
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        want = -(w * logp[np.arange(50), y]).sum() + (kernel**2).sum() / 4.0
        chex.assert_trees_all_close(got, np.float32(want), rtol=1e-5)


def test_unjitted_fit_equals_the_jitted_probe():
    """`_fit` run eagerly (its scan is still compiled, the rest is not) gives the jitted
    `train_probe`'s weights, and both the Newton solution."""
    x, y = _three_classes(1.5)
    (kernel, bias), curve, grad_norm = probe_lib._fit(
        x, y, np.ones(N3, np.float32), num_classes=3, c=1.0, max_iter=300
    )
    jitted, _ = stm.train_probe(x, y, num_classes=3, c=1.0)
    chex.assert_shape(curve, (300,))
    chex.assert_trees_all_close(np.asarray(kernel), jitted.kernel, atol=1e-5)
    chex.assert_trees_all_close(np.asarray(bias), jitted.bias, atol=1e-5)
    ref_kernel, _ = _numpy_newton_softmax(x.astype(np.float64), y, 3, 1.0)
    chex.assert_trees_all_close(np.asarray(kernel), ref_kernel.astype(np.float32), atol=2e-3)
    assert float(grad_norm) < 1e-4 and bool(np.all(np.diff(np.asarray(curve)) <= 1e-6))


# ------------------------------------------------------------------------------ evaluation


class _BagOfWords:
    """Stands in for `Embedder`: hashed counts of the first `max_length` words, unit norm."""

    calls: list = []

    def __init__(self, loaded, *, mesh=None, max_length=256, **_):
        self.max_length = max_length

    def embed(self, texts, progress=False):
        out = np.zeros((len(texts), D2), np.float32)
        for i, text in enumerate(texts):
            for word in text.split()[: self.max_length]:
                out[i, sum(map(ord, word)) % D2] += 1
        _BagOfWords.calls.append((self.max_length, list(texts)))
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


@pytest.fixture
def bag_of_words(monkeypatch):
    _BagOfWords.calls = []
    monkeypatch.setattr(evaluate, "load_bert", lambda encoder, **_: encoder)
    monkeypatch.setattr(evaluate, "Embedder", _BagOfWords)
    return _BagOfWords.calls


WORDS = ["good great fine", "bad awful dull"]
TRAIN = [f"{WORDS[i % 2]} movie number {i}" for i in range(N2)]
TEST = [f"{WORDS[i % 2]} film {i}" for i in range(10)]


@pytest.mark.parametrize("length", [256, 3])
def test_probe_embeds_training_and_test_texts_at_one_length(bag_of_words, length):
    res = evaluate.evaluate_texts(
        TRAIN, [i % 2 for i in range(N2)], TEST, [i % 2 for i in range(10)], num_classes=2,
        mode="probe", seeds=(0, 1), config=stm.STMConfig(max_length=16),
        test_max_length=length,
    )  # fmt: skip
    assert [(n, texts) for n, texts in bag_of_words] == [(length, TRAIN), (length, TEST)]
    assert all(run["grad_norm"] < 1e-4 for run in res["runs"])  # fitted to convergence
    per_seed = res["accuracy"]["per_seed"]
    assert per_seed[0] == per_seed[1] == 1.0  # deterministic: every seed gives the same probe


def _write(path, texts):
    path.write_text(
        "".join(json.dumps({"text": t, "label": i % 2}) + "\n" for i, t in enumerate(texts))
    )
    return str(path)


def test_probe_cli_one_length_for_both_files(bag_of_words, tmp_path, capsys):
    train, test = _write(tmp_path / "tr.jsonl", TRAIN), _write(tmp_path / "te.jsonl", TEST)
    base = ["evaluate", "--train", train, "--test", test, "--mode", "probe", "--quiet"]
    for flags, length in [([], 256), (["--max-length", "64"], 64),
                          (["--test-max-length", "32", "--max-length", "32"], 32)]:  # fmt: skip
        bag_of_words.clear()
        out = tmp_path / "res.json"
        assert cli.main([*base, *flags, "--seeds", "1", "--out", str(out)]) == 0
        assert [n for n, _ in bag_of_words] == [length, length]
        hp = json.loads(out.read_text())["hyperparameters"]
        assert hp["max_length"] == hp["test_max_length"] == length
    bag_of_words.clear()
    assert cli.main([*base, "--max-length", "64", "--test-max-length", "128"]) == 2
    assert "one length" in capsys.readouterr().err and not bag_of_words


@pytest.mark.parametrize(
    "mode,flags,want",
    [("finetune", {}, (None, 256)), ("finetune", {"max_length": 64}, (64, 256)),
     ("finetune", {"max_length": 64, "test_max_length": 100}, (64, 100)),
     ("probe", {}, (None, 256)), ("probe", {"test_max_length": 100}, (None, 100)),
     ("probe", {"max_length": 64}, (None, 64)),
     ("probe", {"max_length": 64, "test_max_length": 64}, (None, 64))],
)  # fmt: skip
def test_cli_lengths(mode, flags, want):
    args = argparse.Namespace(mode=mode, **{"max_length": None, "test_max_length": None, **flags})
    assert _lengths(args) == want

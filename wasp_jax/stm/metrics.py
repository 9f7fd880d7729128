"""Test-set metrics of the small task model: accuracy and macro-F1 (docs/method.md §3.2).

Numpy only, on host arrays of int class ids. These are the single implementations used by
`wasp_jax.stm.evaluate` and by the experiment tables (`experiments/table_imdb*.py`).

    acc = accuracy(test_labels, pred)
    f1 = macro_f1(test_labels, pred, num_classes=2)
"""

from __future__ import annotations

import numpy as np


def _check(labels, pred, num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    labels, pred = np.asarray(labels).ravel(), np.asarray(pred).ravel()
    if labels.shape != pred.shape:
        raise ValueError(f"need one prediction per label, got {pred.shape} and {labels.shape}")
    if num_classes is not None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        for name, arr in (("labels", labels), ("predictions", pred)):
            if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
                raise ValueError(f"{name} must lie in [0, {num_classes})")
    return labels, pred


def accuracy(labels, pred) -> float:
    """Fraction of examples whose predicted class equals the true class ([n], [n] -> float)."""
    labels, pred = _check(labels, pred)
    return float(np.mean(pred == labels))


def per_class_f1(labels, pred, num_classes: int) -> np.ndarray:
    """float64 [C] F1 of each class: 2·TP / (2·TP + FP + FN), and 0 where that is 0 / 0.

    A class that is neither present in ``labels`` nor predicted has TP = FP = FN = 0 and
    scores 0 (it is not skipped).
    """
    labels, pred = _check(labels, pred, num_classes)
    classes = np.arange(num_classes)[:, None]
    is_true, is_pred = labels[None] == classes, pred[None] == classes  # [C, n]
    tp = np.sum(is_true & is_pred, axis=1)
    denom = np.sum(is_true, axis=1) + np.sum(is_pred, axis=1)  # = 2·TP + FP + FN
    return np.divide(2.0 * tp, denom, out=np.zeros(num_classes), where=denom > 0)


def macro_f1(labels, pred, num_classes: int) -> float:
    """Unweighted mean of the per-class F1 over ALL ``num_classes`` classes of the task.

    ``labels`` and ``pred`` are int [n] class ids in [0, num_classes). A class absent from
    both scores 0 and so pulls the mean down (docs/method.md §3.2); this keeps the score
    comparable across runs that predict different label sets.

    Raises:
      ValueError: shapes differ, or an id lies outside [0, num_classes).
    """
    return float(np.mean(per_class_f1(labels, pred, num_classes)))

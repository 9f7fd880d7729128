"""The small task model (STM) that scores synthetic data (docs/method.md §3).

A fine-tuned BERT classifier (`classifier`, `finetune`) or a linear probe on frozen
embeddings (`probe`), their test metrics (`metrics`), and the train-on-one-file,
test-on-another evaluation (`wasp_jax.stm.evaluate`, imported on its own).
"""

from wasp_jax.stm.classifier import Classifier, SequenceClassifier, STMConfig, build_classifier
from wasp_jax.stm.finetune import (
    MIN_RELIABLE_VAL,
    learning_rate,
    make_optimizer,
    split_validation,
    train_classifier,
    weighted_loss,
)
from wasp_jax.stm.metrics import accuracy, macro_f1
from wasp_jax.stm.probe import LinearProbe, train_probe

__all__ = [
    "MIN_RELIABLE_VAL",
    "Classifier",
    "LinearProbe",
    "STMConfig",
    "SequenceClassifier",
    "accuracy",
    "build_classifier",
    "learning_rate",
    "macro_f1",
    "make_optimizer",
    "split_validation",
    "train_classifier",
    "train_probe",
    "weighted_loss",
]

"""The accumulated synthetic set: public texts with their class, PLM and round."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

import numpy as np

from wasp_jax.tasks import TaskSpec

_WS = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Whitespace-collapsed, lower-cased form used for de-duplication."""
    return _WS.sub(" ", text).strip().lower()


@dataclasses.dataclass
class Population:
    """The accumulated synthetic set (public data), in insertion order.

    Attributes:
        texts, labels, plm, rounds: per-sample text, class id, PLM index and the round that
            generated it (0 = zero-shot start).
    """

    texts: list[str] = dataclasses.field(default_factory=list)
    labels: list[int] = dataclasses.field(default_factory=list)
    plm: list[int] = dataclasses.field(default_factory=list)
    rounds: list[int] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)

    def extend(self, texts: Sequence[str], label: int, plm: int, round_: int) -> None:
        self.texts.extend(texts)
        self.labels.extend([label] * len(texts))
        self.plm.extend([plm] * len(texts))
        self.rounds.extend([round_] * len(texts))

    def seen(self) -> set[str]:
        return {normalize(t) for t in self.texts}

    def to_state(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_state(cls, d: dict) -> Population:
        return cls(**{k: list(v) for k, v in d.items()})

    def rows(self, task: TaskSpec, plm_names: Sequence[str]) -> list[dict]:
        """synthetic.jsonl rows: text, label, label_name, plm, round."""
        return [
            {
                "text": t,
                "label": int(y),
                "label_name": task.labels[y],
                "plm": plm_names[k],
                "round": int(r),
            }
            for t, y, k, r in zip(self.texts, self.labels, self.plm, self.rounds)
        ]

    def class_counts(self, num_classes: int) -> list[int]:
        return np.bincount(np.asarray(self.labels, np.int64), minlength=num_classes).tolist()

"""Sizing checks on labelled data: class counts, classes without private samples, and
classes with fewer candidates than the Top-Q vote needs (docs/method.md §2.4).

Messages name classes and counts only, never a record's text.
"""

from __future__ import annotations

import collections
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from wasp_jax.errors import DataError, DataWarning


def class_counts(labels: Iterable[int], num_classes: int) -> list[int]:
    """Counts of each label id in `range(num_classes)` (for public/synthetic data)."""
    counter = collections.Counter(int(label) for label in labels)
    return [counter.get(c, 0) for c in range(num_classes)]


def warn_missing_classes(
    rows: Sequence[Mapping[str, Any]], label_names: Sequence[str], *, what: str = "private"
) -> list[int]:
    """Warns (DataWarning) for every class with no record in `rows`; this is allowed.

    A class without private samples still gets noisy votes, but they are pure noise, so its
    good/bad examples are chosen at random. Only the class names go into the warning (shown
    on the console); nothing is written to the workdir.

    Returns:
      The ids of the classes without records.
    """
    present = {int(row["label"]) for row in rows}
    missing = [c for c in range(len(label_names)) if c not in present]
    for c in missing:
        warnings.warn(
            f"{what} data has no samples of class {c} ({label_names[c]!r}): its votes will be "
            "only noise, so its prompt examples are chosen at random",
            DataWarning,
            stacklevel=2,
        )
    return missing


def check_candidate_counts(
    counts: Sequence[int],
    q: int,
    *,
    label_names: Sequence[str] | None = None,
    strict: bool = True,
    what: str = "synthetic candidates",
    fix: str | None = None,
    empty_fix: str | None = None,
) -> list[int]:
    """Checks that every class has at least `q` candidates to vote on (Top-Q).

    The counts are of public (synthetic) samples, so they may appear in messages. With fewer
    than `q` candidates a private sample's votes are truncated to the class size (the L2
    sensitivity can only shrink, so the privacy ledger stays valid), but the configured `q` is
    then not what runs. Hence the default is an error; `strict=False` turns it into a
    DataWarning (use it for pools that grow over rounds). A class with no candidates at all is
    always an error: it can neither be voted on nor give prompt examples.

    Args:
      counts: number of candidates per class id.
      q: votes per private sample.
      label_names: class names for messages.
      strict: raise instead of warning when 0 < count < q.
      what: what the candidates are, for messages.
      fix: what the user should change, for messages (default: lower q or add candidates).
      empty_fix: what to change when a class has no candidates at all.

    Returns:
      The ids of the classes with fewer than `q` candidates (when not strict).

    Raises:
      DataError: a class has no candidates, or (strict) fewer than `q`.
    """
    names = [
        f"class {c}" + (f" ({label_names[c]!r})" if label_names is not None else "")
        for c in range(len(counts))
    ]
    empty = [names[c] for c, count in enumerate(counts) if count == 0]
    if empty:
        raise DataError(
            f"{what}: {', '.join(empty)} "
            + (
                "has no candidates, so it cannot"
                if len(empty) == 1
                else "have no candidates, so they cannot"
            )
            + " be voted on or give prompt examples; "
            + (empty_fix or "generate (or provide) samples of every class")
        )
    short = []
    for c, count in enumerate(counts):
        if count < q:
            msg = f"{what}: {names[c]} has {count} candidates, fewer than voting.q={q}; " + (
                fix or f"lower voting.q to at most {min(counts)} or provide more candidates"
            )
            if strict:
                raise DataError(msg)
            warnings.warn(msg, DataWarning, stacklevel=2)
            short.append(c)
    return short

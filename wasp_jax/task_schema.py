"""The fields a task JSON may have, and checks of their values (used by `wasp_jax.tasks`).

A misspelt field would otherwise be ignored silently (``min_word`` doing nothing), and a JSON
``NaN`` or ``Infinity`` would reach the pipeline as a number; both are refused here with the
field's name and, for an unknown one, the closest known name.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from typing import Any

from wasp_jax.errors import TaskError

#: Top-level fields, and the fields of each prompt section.
FIELDS = (
    "name",
    "description",
    "labels",
    "label_words",
    "label_field",
    "label_offset",
    "zero_shot",
    "contrastive",
    "non_contrastive",
    "aug_pe",
    "min_words",
    "max_words",
    "min_new_tokens",
    "max_new_tokens",
    "stop",
    "notes",
)
SECTIONS = {
    "zero_shot": ("prompt", "prompt_without_subject", "subject_prompt", "subject_max_new_tokens"),
    "contrastive": ("bad_prefix", "good_prefix", "instruction"),
    "non_contrastive": ("prefix", "instruction"),
    "aug_pe": ("prompt", "styles"),
}


def _unknown(name: str, known, where: str) -> TaskError:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known fields: {', '.join(known)}"
    return TaskError(f"{where}: unknown field {name!r}{hint}")


def check_fields(d: Mapping[str, Any], where: str) -> None:
    """Refuses any field the task format does not define (naming the closest known one)."""
    for key in d:
        if key not in FIELDS:
            raise _unknown(key, FIELDS, where)
    for section, known in SECTIONS.items():
        value = d.get(section)
        if isinstance(value, Mapping):
            for key in value:
                if key not in known:
                    raise _unknown(f"{section}.{key}", [f"{section}.{k}" for k in known], where)


def integer(d: Mapping[str, Any], key: str, default: int, where: str, minimum: int = 0) -> int:
    """`d[key]` (or `default`) as an integer >= `minimum`; NaN, infinities, fractions,
    booleans and strings are refused with the field's name."""
    value = d.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TaskError(f"{where}: field {key!r} must be a whole number, got {value!r}")
    if isinstance(value, float) and (not math.isfinite(value) or not value.is_integer()):
        raise TaskError(f"{where}: field {key!r} must be a finite whole number, got {value!r}")
    if value < minimum:
        raise TaskError(f"{where}: field {key!r} must be >= {minimum}, got {value!r}")
    return int(value)

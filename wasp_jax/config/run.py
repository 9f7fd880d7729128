"""`WaspConfig`: one pipeline run, and typed access to it (dotted keys, `--set` strings)."""

from __future__ import annotations

import ast
import dataclasses
import difflib
import json
import math
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from wasp_jax.config.api import ApiConfig
from wasp_jax.config.plus import PlusConfig
from wasp_jax.config.proto import ProtoConfig
from wasp_jax.config.sections import (
    DataConfig,
    EmbedderConfig,
    EvalConfig,
    GenerationConfig,
    PrivacyConfig,
    ReplayConfig,
    RuntimeConfig,
    SelectionConfig,
    VotingConfig,
    _check,
)
from wasp_jax.config.tune import TuneConfig
from wasp_jax.errors import ConfigError

#: Keys that are not settings (any more): each names what to do instead. A key at its neutral
#: value (0: the file as it is, no centroid release) is accepted and ignored, so that an
#: older config.json still loads.
_PREPARE = (
    "the run uses every record of data.private_path and its guarantee is stated for the "
    "records of that file; to run on {what}, write it to a new file first (wasp-jax "
    "prepare-private --task TASK --data FILE --out NEW.jsonl {flag} VALUE) and set "
    "data.private_path to NEW.jsonl"
)
REMOVED_KEYS = {
    "data.num_private": _PREPARE.format(what="the first N records", flag="--num"),
    "data.class_skew_alpha": _PREPARE.format(
        what="a class-skewed subsample", flag="--class-skew-alpha"
    ),
    "plus.centroid_share": (
        "WASP+ makes no class-centroid release (nothing would use it); remove the key and "
        "split the budget between plus.usefulness_share and plus.cluster_share (sum 1)"
    ),
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class WaspConfig:
    """One pipeline run: the method's name and every section a method may read.

    The sections are checked here on their own; whether they suit the method is checked by
    the method's plug-in (`wasp_jax.pipeline.methods.resolve`), before a run reads anything.
    """

    method: str = "wasp"
    seed: int = 0
    task: str = "imdb"
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    privacy: PrivacyConfig = dataclasses.field(default_factory=PrivacyConfig)
    voting: VotingConfig = dataclasses.field(default_factory=VotingConfig)
    selection: SelectionConfig = dataclasses.field(default_factory=SelectionConfig)
    generation: GenerationConfig = dataclasses.field(default_factory=GenerationConfig)
    embedder: EmbedderConfig = dataclasses.field(default_factory=EmbedderConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    replay: ReplayConfig = dataclasses.field(default_factory=ReplayConfig)
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)
    api: ApiConfig = dataclasses.field(default_factory=ApiConfig)
    plus: PlusConfig = dataclasses.field(default_factory=PlusConfig)
    proto: ProtoConfig = dataclasses.field(default_factory=ProtoConfig)
    tune: TuneConfig = dataclasses.field(default_factory=TuneConfig)

    def __post_init__(self):
        # what suits the method is checked by the method (`wasp_jax.pipeline.methods.resolve`)
        _check(bool(self.method), "method", "must name a method (e.g. 'wasp')")
        _check(self.seed >= 0, "seed", f"must be >= 0, got {self.seed}")
        _check(bool(self.task), "task", "must name a task or a task file")

    @property
    def num_histograms(self) -> int:
        return len(self.voting.release)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready nested dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> WaspConfig:
        """Inverse of `to_dict`; unknown keys are errors naming the closest valid key."""
        return _build(cls, d, prefix="")

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> WaspConfig:
        return cls.from_dict(json.loads(text))


# ----------------------------------------------------------------------------- typed access


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def valid_keys(cls=WaspConfig, prefix: str = "") -> list[str]:
    """Every dotted leaf key of the config (e.g. "voting.q")."""
    out = []
    for f in dataclasses.fields(cls):
        tp = _hints(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            out.extend(valid_keys(tp, prefix + f.name + "."))
        else:
            out.append(prefix + f.name)
    return out


def _removed(key: str, value: Any) -> bool:
    """True for a removed key at its neutral value (ignored); raises for any other value."""
    if key not in REMOVED_KEYS:
        return False
    if value in (0, 0.0, None) and not isinstance(value, bool):
        return True
    raise ConfigError(f"{key} is not a setting: {REMOVED_KEYS[key]}")


def _unknown_key(key: str) -> ConfigError:
    close = difflib.get_close_matches(key, valid_keys(), n=1, cutoff=0.4)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"unknown config key {key!r}{hint}")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Checks `value` against the declared type `tp`, converting lossless forms only."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if origin is tuple:
        if isinstance(value, str):
            value = tuple(v.strip() for v in value.split(",") if v.strip())
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list of {args[0].__name__}, got {value!r}")
        return tuple(_coerce(v, args[0], key) for v in value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and value.strip().lower() == "nan":
            raise ConfigError(f"{key}: nan is not a value here; give a number (or inf if allowed)")
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported field type {tp!r}")


def _build(cls, d: Mapping[str, Any], prefix: str):
    if not isinstance(d, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {d!r}")
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for k, v in d.items():
        if k not in names and _removed(prefix + k, v):
            continue
        if k not in names:
            raise _unknown_key(prefix + k)
        tp = hints[k]
        if dataclasses.is_dataclass(tp):
            kwargs[k] = v if isinstance(v, tp) else _build(tp, v, prefix + k + ".")
        else:
            kwargs[k] = _coerce(v, tp, prefix + k)
    return cls(**kwargs)


def replace(cfg: WaspConfig, **changes: Any) -> WaspConfig:
    """Returns `cfg` with dotted keys replaced, re-validated: `replace(cfg, **{"voting.q": 1})`.

    Raises:
        ConfigError: for an unknown key (naming the closest valid one), a wrongly typed value
            or a value outside its allowed range.
    """
    d = cfg.to_dict()
    keys = set(valid_keys())
    for key, value in changes.items():
        if key not in keys and _removed(key, value):
            continue
        if key not in keys:
            raise _unknown_key(key)
        node = d
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return WaspConfig.from_dict(d)


def _parse_value(raw: str, tp: Any, key: str = "value") -> Any:
    text = raw.strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if text.lower() in ("none", "null"):
        return None
    if text.lower() in ("inf", "infinity", "+inf"):
        return math.inf
    if text.lower() in ("-inf", "-infinity"):
        return -math.inf
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare string such as a model name or a path
    if isinstance(value, float) and not math.isfinite(value):
        # e.g. 1e400 parses to inf: never let a typo switch the noise off
        raise ConfigError(
            f"{key}={text}: the number is too large to represent (it would become "
            f"{value}); give a finite number, or the literal inf where inf is allowed"
        )
    return value


def apply_overrides(cfg: WaspConfig, overrides: Sequence[str]) -> WaspConfig:
    """Applies `--set` strings such as "voting.q=4" or "generation.plms=['tiny-llama']".

    Values are parsed with `ast.literal_eval` (bare words stay strings; true/false/none/inf
    are understood), then type-checked against the field.

    Raises:
        ConfigError: malformed override, unknown key, wrong type or out-of-range value.
    """
    hints = {}
    for key in valid_keys():
        cls, *path = [WaspConfig, *key.split(".")]
        for p in path[:-1]:
            cls = _hints(cls)[p]
        hints[key] = _hints(cls)[path[-1]]
    changes = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. voting.q=4)")
        key, raw = item.split("=", 1)
        key = key.strip()
        if key not in hints and _removed(key, _parse_value(raw, None, key)):
            continue
        if key not in hints:
            raise _unknown_key(key)
        changes[key] = _parse_value(raw, hints[key], key)
    return replace(cfg, **changes)

"""Typed, validated run configuration.

A run is one frozen `WaspConfig` made of small frozen sections (`sections`), each checked in
`__post_init__`; a bad value raises `ConfigError` naming the field and the allowed range.
Config files are Python files exposing `get_config() -> WaspConfig`, usually a diff from
`base_config()` written with `replace(cfg, **{"voting.q": 1})`; `apply_overrides` applies
command-line `--set key=value` strings with a type check (`run`). Presets and file loading
are in `presets`.
"""

from wasp_jax.config.api import ApiConfig
from wasp_jax.config.plus import PlusConfig
from wasp_jax.config.presets import base_config, demo_config, load_config
from wasp_jax.config.proto import ProtoConfig
from wasp_jax.config.run import WaspConfig, apply_overrides, replace, valid_keys
from wasp_jax.config.sections import (
    ACCOUNTANTS,
    ADJACENCIES,
    EVAL_MODES,
    MESH_CHOICES,
    PLM_SCORES,
    RELEASES,
    DataConfig,
    EmbedderConfig,
    EvalConfig,
    GenerationConfig,
    PrivacyConfig,
    ReplayConfig,
    RuntimeConfig,
    SelectionConfig,
    VotingConfig,
)
from wasp_jax.config.tune import TuneConfig
from wasp_jax.errors import ConfigError

__all__ = [
    "ACCOUNTANTS",
    "ADJACENCIES",
    "EVAL_MODES",
    "MESH_CHOICES",
    "PLM_SCORES",
    "RELEASES",
    "ApiConfig",
    "ConfigError",
    "DataConfig",
    "EmbedderConfig",
    "EvalConfig",
    "GenerationConfig",
    "PrivacyConfig",
    "PlusConfig",
    "ProtoConfig",
    "ReplayConfig",
    "RuntimeConfig",
    "SelectionConfig",
    "TuneConfig",
    "VotingConfig",
    "WaspConfig",
    "apply_overrides",
    "base_config",
    "demo_config",
    "load_config",
    "replace",
    "valid_keys",
]

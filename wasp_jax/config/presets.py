"""Preset configs: the WASP main line, the demo, and config files (the per-method switch is
`wasp_jax.pipeline.methods.with_method`)."""

from __future__ import annotations

import importlib.util
import json
import pathlib
from importlib import resources

from wasp_jax.config.run import WaspConfig, replace
from wasp_jax.errors import ConfigError

# ----------------------------------------------------------------------------- presets


def base_config() -> WaspConfig:
    """The WASP main line with corrected defaults, at a laptop-sized budget."""
    return WaspConfig()


def demo_config() -> WaspConfig:
    """The embedded default: 100 bundled private IMDb reviews, SmolLM2 + Gemma 3, MiniLM."""
    private = resources.files("wasp_jax") / "data" / "imdb" / "private.jsonl"
    return replace(
        base_config(),
        **{
            "task": "imdb",
            "data.private_path": str(private),
            "generation.plms": ("smollm2-135m-instruct", "gemma3-270m"),
            "generation.budget": 48,
            "generation.rounds": 2,
            "generation.max_new_tokens": 32,
            "generation.batch_size": 8,
            "generation.min_new_tokens": 8,
            # 8 round-0 samples per class: S = 4 good + 4 bad keeps them full and disjoint
            "selection.s": 4,
            "privacy.epsilon": 4.0,
            "privacy.delta": 1e-5,
        },
    )


def load_config(path: str) -> WaspConfig:
    """Loads a config: a Python file exposing `get_config()` or a JSON file (`config.json`).

    Raises:
        ConfigError: the file is missing, has no `get_config`, or yields an invalid config.
    """
    p = pathlib.Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {path!r} does not exist")
    if p.suffix == ".json":
        try:
            return WaspConfig.from_json(p.read_text())
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}: not valid JSON ({err})") from err
    if p.suffix != ".py":
        raise ConfigError(f"config file {path!r} must be a .py file with get_config() or .json")
    spec = importlib.util.spec_from_file_location(f"_wasp_config_{p.stem}", p)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path}: defines no get_config() -> WaspConfig")
    cfg = module.get_config()
    if not isinstance(cfg, WaspConfig):
        raise ConfigError(f"{path}: get_config() returned {type(cfg).__name__}, not WaspConfig")
    return cfg

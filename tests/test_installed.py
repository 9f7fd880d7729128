"""A missing package skips a test on a developer machine and fails it with CI set."""

import json

import pytest

from tests import installed

ABSENT = "wasp_jax_no_such_module_anywhere"


@pytest.mark.parametrize("value", ["", "0", "false", "False"])
def test_missing_package_skips_outside_ci(monkeypatch, value):
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.skip.Exception, match=ABSENT):
        installed.require_wheel(ABSENT, "no-such-wheel")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="requirements-models.txt"):
        installed.require_wheel(ABSENT, "no-such-wheel")


@pytest.mark.parametrize("value", ["true", "1", "yes"])
def test_missing_package_fails_in_ci(monkeypatch, value):
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match=f"{ABSENT} is not installed.*CI is set"):
        installed.require(ABSENT, "requirements.txt")


def test_present_package_is_returned(monkeypatch):
    monkeypatch.setenv("CI", "true")
    assert installed.require("json", "the standard library") is json

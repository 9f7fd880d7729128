"""The test configuration keeps a user's XLA_FLAGS and still forces 8 CPU devices."""

import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]

_PROBE = """
import os
import tests.conftest  # noqa: F401  (sets the environment before jax is imported)
import jax
print(jax.device_count())
print(os.environ["XLA_FLAGS"])
"""


@pytest.mark.parametrize(
    "user_flags",
    [
        "--xla_cpu_multi_thread_eigen=false",
        "--xla_force_host_platform_device_count=2 --xla_cpu_multi_thread_eigen=false",
        None,
    ],
)
def test_xla_flags_are_appended_not_defaulted(user_flags):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["PYTHONPATH"] = str(REPO)
    env["JAX_PLATFORMS"] = "cpu"
    if user_flags is not None:
        env["XLA_FLAGS"] = user_flags
    out = subprocess.run(
        [sys.executable, "-c", _PROBE],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    count, flags = out.stdout.strip().splitlines()[-2:]
    assert int(count) == 8
    flags = flags.split()
    assert flags[-1] == "--xla_force_host_platform_device_count=8"
    assert sum(f.startswith("--xla_force_host_platform_device_count") for f in flags) == 1
    if user_flags is not None:
        assert "--xla_cpu_multi_thread_eigen=false" in flags

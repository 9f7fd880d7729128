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


@pytest.mark.slow  # three subprocesses, each importing jax
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


def test_cache_is_a_temp_dir_shared_by_the_run(tmp_path_factory):
    cache = pathlib.Path(os.environ["WASP_JAX_CACHE"])
    assert cache.is_dir()
    assert cache.is_relative_to(tmp_path_factory.getbasetemp())
    assert not cache.is_relative_to(pathlib.Path.home() / ".cache")


def test_the_cache_is_the_same_in_every_test(tmp_path_factory):
    """Conversion caches are expensive: one folder serves the whole session."""
    assert os.environ["WASP_JAX_CACHE"] == str(tmp_path_factory.getbasetemp() / "wasp_jax_cache0")


def test_compile_cache_is_off_for_an_unmarked_test():
    assert os.environ["WASP_JAX_COMPILE_CACHE"] == "0"


@pytest.mark.compile_cache
def test_compile_cache_is_left_on_for_a_marked_test():
    assert os.environ.get("WASP_JAX_COMPILE_CACHE", "1") == "1"


_BEFORE = {}


@pytest.mark.compile_cache
def test_a_test_may_point_jax_at_a_compile_cache(tmp_path):
    import jax

    _BEFORE["dir"] = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "xla"))  # restored after


def test_the_compile_cache_dir_was_restored_after_the_previous_test():
    import jax

    if "dir" not in _BEFORE:
        pytest.skip("runs after test_a_test_may_point_jax_at_a_compile_cache")
    assert jax.config.jax_compilation_cache_dir == _BEFORE["dir"]


def test_the_runner_leaves_the_compile_cache_off_in_an_unmarked_test():
    import jax

    from wasp_jax.pipeline.run import runner

    before = jax.config.jax_compilation_cache_dir
    runner._enable_compile_cache("")
    assert jax.config.jax_compilation_cache_dir == before


@pytest.mark.compile_cache
def test_the_runner_puts_the_compile_cache_under_the_cache_root_when_asked():
    import jax

    from wasp_jax.pipeline.run import runner

    if jax.config.jax_compilation_cache_dir:
        pytest.skip("a compile cache is configured already: the runner leaves it as it is")
    runner._enable_compile_cache("")
    want = os.path.join(os.environ["WASP_JAX_CACHE"], "xla")
    assert jax.config.jax_compilation_cache_dir == want and os.path.isdir(want)

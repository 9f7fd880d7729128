"""Test configuration. Forces 8 fake CPU devices *before* anything imports jax."""

import os
import re

# Append to the user's XLA_FLAGS rather than defaulting it: a user who sets any XLA flag
# must still get the 8 devices the sharding tests need. A device-count flag of their own
# is replaced so that ours is the only one.
_DEVICE_FLAG = re.compile(r"--xla_force_host_platform_device_count=\S+")
_user_flags = _DEVICE_FLAG.sub("", os.environ.get("XLA_FLAGS", "")).split()
os.environ["XLA_FLAGS"] = " ".join([*_user_flags, "--xla_force_host_platform_device_count=8"])
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pathlib  # noqa: E402

import pytest  # noqa: E402

from wasp_jax.data import shared_data_dir  # noqa: E402


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """The project's shared data folder (`wasp_jax.data.shared_data_dir`: $WASP_JAX_DATA, else
    ../shared/data); present on CI and dev machines, not in users' clones."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"{path} is absent (only present on the project's machines)")
    return path


@pytest.fixture(scope="session")
def _session_cache(tmp_path_factory) -> pathlib.Path:
    """One model/embedding cache for the whole run: converted checkpoints are built once."""
    return tmp_path_factory.mktemp("wasp_jax_cache")


@pytest.fixture(autouse=True)
def _hermetic_caches(request, monkeypatch, _session_cache):
    """Every test gets the session's temporary $WASP_JAX_CACHE (never ~/.cache) and, unless
    marked `compile_cache`, no persistent XLA compile cache (WASP_JAX_COMPILE_CACHE=0, which the
    runner honours whatever the config says). JAX's compile-cache directory is restored after
    each test, so one test enabling it does not leak into the next."""
    import jax

    monkeypatch.setenv("WASP_JAX_CACHE", str(_session_cache))
    if request.node.get_closest_marker("compile_cache") is None:
        monkeypatch.setenv("WASP_JAX_COMPILE_CACHE", "0")
    else:
        monkeypatch.delenv("WASP_JAX_COMPILE_CACHE", raising=False)
    saved = jax.config.jax_compilation_cache_dir
    yield
    if jax.config.jax_compilation_cache_dir != saved:
        jax.config.update("jax_compilation_cache_dir", saved)
        # JAX opens its cache once per process: drop the open one so the restored dir applies.
        from jax._src import compilation_cache

        getattr(compilation_cache, "reset_cache", lambda: None)()

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

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """Path to ../shared/data (present in CI and dev machines, not in users' clones)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent (only present on the project's machines)")
    return SHARED_DATA

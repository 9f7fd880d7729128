"""The run's secret: the only root of its DP noise, kept in the workdir's private part.

On a run's first start `load_or_create_secret` draws `SECRET_BYTES` (256 bits) from the
operating system's CSPRNG (`secrets.token_bytes`) and writes them, atomically and with mode
0600, to `private/noise_secret`; a resume reads them back, so it draws the same releases. A
`--force` rerun (which removes `private/`) or a new workdir draws a new one. The secret is
never derived from the seed and never logged, printed or written anywhere else. In a
multi-process job process 0 reads or draws it and `shared_secret` broadcasts it to the other
processes of the job, and nowhere else.

It also keys the fingerprint of the private data file (`wasp_jax.pipeline.run.fingerprint`).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import secrets
import stat

from wasp_jax import data as data_io
from wasp_jax import distributed as dist
from wasp_jax.errors import DataError
from wasp_jax.privacy.noise_source import SECRET_BYTES

#: The secret's file name inside the workdir's private folder.
SECRET_FILE = "noise_secret"


class SecretError(DataError):
    """The run's secret file is missing on resume, unreadable or damaged (CLI exit code 2)."""


def _fix(path: pathlib.Path) -> str:
    return (
        f"{path} is the run's noise secret, so without it the run cannot be resumed; pass "
        "--force to start the run afresh (its outputs are discarded) or choose another --workdir"
    )


def _read(path: pathlib.Path) -> bytes:
    if path.is_symlink() or not path.is_file():
        raise SecretError(f"{_fix(path)} ({path.name} is not a regular file)")
    try:
        with open(path, "rb") as fh:
            data = fh.read(SECRET_BYTES + 1)
    except OSError as err:
        raise SecretError(f"{_fix(path)} (it cannot be read: {err.strerror})") from None
    if len(data) != SECRET_BYTES:
        size = f"more than {SECRET_BYTES}" if len(data) > SECRET_BYTES else str(len(data))
        raise SecretError(
            f"{_fix(path)} (it is damaged: it holds {size} bytes, a run's secret {SECRET_BYTES})"
        )
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        with contextlib.suppress(OSError):  # a read-only workdir can still be looked at
            os.chmod(path, 0o600)
    return data


def load_or_create_secret(private_dir: str | os.PathLike, *, must_exist: bool = False) -> bytes:
    """The run's secret: read from `private_dir`, or drawn and stored there on first start.

    Args:
      private_dir: the workdir's private folder (mode 0700).
      must_exist: the run has a checkpoint, so a missing secret is an error (a new one would
        draw other noise and fail the fingerprint check), not a first start.

    Raises:
      SecretError: the file is missing (with `must_exist`), unreadable, not a regular file or
        not `SECRET_BYTES` long; the message names the fix.
    """
    path = pathlib.Path(private_dir) / SECRET_FILE
    if path.exists() or path.is_symlink():
        return _read(path)
    if must_exist:
        raise SecretError(f"{_fix(path)} (it is missing while the run's checkpoint is there)")
    secret = secrets.token_bytes(SECRET_BYTES)
    data_io.atomic_write_bytes(path, secret, mode=0o600)
    return secret


def shared_secret(private_dir: str | os.PathLike, *, must_exist: bool = False) -> bytes:
    """`load_or_create_secret` on process 0, broadcast to every process of a job.

    Raises:
      SecretError: on process 0, its own error; on the others, a line that points to it.
    """
    if not dist.is_multi():
        return load_or_create_secret(private_dir, must_exist=must_exist)
    secret, failure = None, None
    if dist.is_writer():
        try:
            secret = load_or_create_secret(private_dir, must_exist=must_exist)
        except SecretError as err:
            failure = err
    got = dist.broadcast_bytes(secret, what="sharing the run's noise secret")
    if failure is not None:
        raise failure
    if got is None or len(got) != SECRET_BYTES:
        raise SecretError(
            "process 0 could not read or draw the run's noise secret (its error names the "
            "problem and the fix)"
        )
    return got

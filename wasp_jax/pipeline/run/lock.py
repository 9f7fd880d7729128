"""One run per workdir: an OS-level advisory lock held for the whole run.

The lock is ``flock`` on ``WORKDIR/.wasp-jax.lock``, taken before anything in the workdir is
read, cleared (``--force``) or written, and released by the OS on any exit, ``kill -9``
included, so a crashed run never leaves a stale lock behind. The file itself stays (it only
records the holder's pid and start time, for the message a second run prints); ``--force``
does not remove it.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import time

from wasp_jax.errors import DataError

LOCK_FILE = ".wasp-jax.lock"


class WorkdirLockedError(DataError):
    """Another run holds the workdir (CLI exit code 2)."""


@contextlib.contextmanager
def workdir_lock(workdir: str | os.PathLike):
    """Holds the workdir's lock for the duration of the ``with`` block.

    Raises:
        WorkdirLockedError: at once (no waiting) if another process holds it; the message
            names that process's pid and start time.
    """
    try:
        import fcntl
    except ImportError:  # not a POSIX system: no advisory locks to take
        yield
        return
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
            raise WorkdirLockedError(
                f"workdir {workdir} is in use by another wasp-jax run ({holder}); wait for it "
                "to finish or choose another --workdir"
            ) from None
        os.ftruncate(fd, 0)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        os.pwrite(fd, f"pid {os.getpid()}, started {stamp}\n".encode(), 0)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)

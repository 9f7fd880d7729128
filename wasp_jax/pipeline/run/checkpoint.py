"""Crash-safe run state: one JSON state file plus NumPy arrays, all written atomically.

Layout under `<workdir>/private/checkpoint/`: `state.json` (the `RunState`: completed stages,
population, ledger, round plans, metrics) and `*.npy` arrays (synthetic embeddings, each
round's noisy votes). Arrays are written before the state that refers to them, and `state.json` is
replaced in one `os.replace`, so after a crash the state on disk is always the last complete
stage. Only public values are stored: synthetic texts and their embeddings, post-noise
votes, the ledger, and the inputs' fingerprints (the private file's keyed with the run's
secret). Nothing private and nothing pre-noise is ever passed here. The checkpoint is in the
workdir's private part all the same: it is never released.

This uses plain JSON/NPY rather than orbax: the state is a small host-side record of lists,
and a single atomic file replace is the simplest way to make "stage done" and "ledger
updated" one event.
"""

from __future__ import annotations

import io
import json
import pathlib

import numpy as np

from wasp_jax import data as data_io
from wasp_jax.pipeline.run.state import RunState
from wasp_jax.pipeline.run.workdir import CHECKPOINT_DIR, private_dir

STATE_VERSION = 2


class Checkpoint:
    """Reads and writes the run state of one workdir."""

    def __init__(self, workdir: str | pathlib.Path):
        self.dir = private_dir(workdir) / CHECKPOINT_DIR

    @property
    def state_path(self) -> pathlib.Path:
        return self.dir / "state.json"

    def _damaged(self, path: pathlib.Path, why: str) -> data_io.DataError:
        return data_io.DataError(
            f"{path} is damaged ({why}), so the run cannot be resumed; pass --force to start "
            "it afresh (its outputs are discarded) or choose another --workdir"
        )

    def _read(self, path: pathlib.Path) -> bytes | None:
        """The bytes of a checkpoint file, or None if it is absent."""
        return path.read_bytes() if path.is_file() else None

    def load(self) -> RunState | None:
        """The last saved state, or None for a fresh workdir.

        Raises:
          DataError: a damaged or foreign state file (the message names the fix).
        """
        raw = self._read(self.state_path)
        if raw is None:
            return None
        try:
            state = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise self._damaged(self.state_path, f"not valid JSON: {err}") from None
        if not isinstance(state, dict):
            raise self._damaged(self.state_path, "not a JSON object")
        if state.get("version") != STATE_VERSION:
            raise data_io.DataError(
                f"{self.state_path} has state version {state.get('version')}, expected "
                f"{STATE_VERSION}; use a new workdir or --force"
            )
        try:
            return RunState.from_json_dict(state)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise self._damaged(self.state_path, f"{type(err).__name__}: {err}") from None

    def save_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Writes each array (name -> `.npy`) atomically, without touching the state."""
        self.dir.mkdir(parents=True, exist_ok=True)
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.save(buf, np.asarray(arr), allow_pickle=False)
            data_io.atomic_write_bytes(self.dir / f"{name}.npy", buf.getvalue())

    def save(self, state: RunState, arrays: dict[str, np.ndarray] | None = None) -> None:
        """Writes `arrays` (name -> array, `.npy`) and then `state` (the commit point)."""
        self.save_arrays(arrays or {})
        record = dict(state.to_json_dict(), version=STATE_VERSION)
        data_io.atomic_write_text(self.state_path, json.dumps(record))

    def load_array(self, name: str) -> np.ndarray | None:
        """A saved numeric array, or None if absent.

        Raises:
          DataError: the file is not a plain numeric `.npy` (e.g. an object array).
        """
        path = self.dir / f"{name}.npy"
        raw = self._read(path)
        if raw is None:
            return None
        try:
            arr = np.load(io.BytesIO(raw), allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise self._damaged(path, f"not a numeric .npy array: {err}") from None
        if arr.dtype.kind not in "biuf":
            raise self._damaged(path, f"dtype {arr.dtype}, expected numbers")
        return arr

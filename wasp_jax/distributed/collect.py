"""Host-level collectives of a multi-process run: shares, gathers, broadcasts, checksums.

Work that every process does on its own devices (generation, embedding) is split into
contiguous shares (`share`); the results come back to every process with `allgather_bytes`
/ `allgather_arrays`, so that all of them hold the same population. `broadcast_bytes` sends
process 0's bytes (the restored checkpoint) to all. `check_same` compares a SHA-256 of a value
across processes and stops the run when they differ. In a single process every function is
the identity and never touches the network.

A peer that died makes a collective fail (gloo: "connection closed by peer") or the runtime
stop the job after the heartbeat timeout; the collective then raises `PeerFailure`, one line
that says to rerun the same command to resume.
"""

from __future__ import annotations

import contextlib
import hashlib
import io

import numpy as np

from wasp_jax.distributed.runtime import process_count, process_index


class PeerFailure(RuntimeError):
    """Another process of the job stopped (crashed, killed or unreachable)."""


class DivergenceError(RuntimeError):
    """The processes of a job hold different values where they must hold the same."""


@contextlib.contextmanager
def _collective(what: str):
    import jax

    try:
        yield
    except jax.errors.JaxRuntimeError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise PeerFailure(
            f"process {process_index()}: {what} failed because another process of the job "
            f"stopped ({first[:200]}); rerun the same command to resume from the checkpoint"
        ) from None


def share(n: int, *, index: int | None = None, count: int | None = None) -> slice:
    """This process's contiguous share of ``range(n)`` (sizes differ by at most one)."""
    count = process_count() if count is None else count
    index = process_index() if index is None else index
    return slice(n * index // count, n * (index + 1) // count)


def _gather_u8(data: np.ndarray) -> list[np.ndarray]:
    from jax.experimental import multihost_utils as mu

    data = np.ascontiguousarray(data, np.uint8).ravel()
    sizes = np.asarray(mu.process_allgather(np.array([data.size], np.int64))).ravel()
    width = max(int(sizes.max()), 1)
    padded = np.zeros(width, np.uint8)
    padded[: data.size] = data
    rows = np.asarray(mu.process_allgather(padded)).reshape(len(sizes), width)
    return [rows[p, : int(sizes[p])] for p in range(len(sizes))]


def allgather_bytes(data: bytes, *, what: str = "a gather") -> list[bytes]:
    """Every process's `data`, in process order (the same list on every process)."""
    if process_count() == 1:
        return [bytes(data)]
    with _collective(what):
        return [p.tobytes() for p in _gather_u8(np.frombuffer(data, np.uint8))]


def broadcast_bytes(data: bytes | None, *, what: str = "a broadcast") -> bytes | None:
    """Process 0's `data` on every process (None stays None); other processes pass anything."""
    if process_count() == 1:
        return data
    mine = b"" if process_index() != 0 or data is None else b"\x01" + data
    first = allgather_bytes(mine, what=what)[0]
    return first[1:] if first else None


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def allgather_arrays(
    arrays: dict[str, np.ndarray], *, what: str = "a gather"
) -> list[dict[str, np.ndarray]]:
    """Every process's dict of arrays, in process order (exact: the bytes travel)."""
    if process_count() == 1:
        return [dict(arrays)]
    out = []
    for blob in allgather_bytes(_npz(arrays), what=what):
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            out.append({k: z[k] for k in z.files})
    return out


def digest(*parts: bytes | np.ndarray | str) -> bytes:
    """SHA-256 of the parts (arrays by dtype, shape and bytes)."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, np.ndarray):
            h.update(f"{p.dtype.str}{p.shape}".encode())
            p = np.ascontiguousarray(p).tobytes()
        elif isinstance(p, str):
            p = p.encode()
        h.update(len(p).to_bytes(8, "little"))
        h.update(p)
    return h.digest()


def check_same(what: str, *parts: bytes | np.ndarray | str) -> str:
    """Stops the run unless every process holds the same `parts`; returns the hex digest.

    Raises:
      DivergenceError: naming `what` and the processes that disagree with process 0.
    """
    mine = digest(*parts)
    if process_count() == 1:
        return mine.hex()
    digests = allgather_bytes(mine, what=f"the checksum of {what}")
    odd = [p for p, d in enumerate(digests) if d != digests[0]]
    if odd:
        raise DivergenceError(
            f"{what} differs between processes (processes {odd} disagree with process 0); "
            "nothing was released. Every process must run the same command on the same files"
        )
    return mine.hex()


def barrier(name: str) -> None:
    """Waits until every process reaches `name`."""
    if process_count() == 1:
        return
    from jax.experimental import multihost_utils as mu

    with _collective(f"the barrier {name!r}"):
        mu.sync_global_devices(name)


def allgather_cells(cells, tokens, logprobs, *, what: str = "a gather") -> None:
    """Fills ``tokens[i][j]`` / ``logprobs[i][j]`` of every process's `cells` on every process.

    Each process filled the (prompt i, sample j) cells of its share of a generation; after
    the call all processes hold every cell (int32 tokens and float32 log-probabilities,
    exactly as sampled).
    """
    cells = list(cells)
    mine = {
        "cells": np.asarray(cells, np.int64).reshape(-1, 2),
        "lengths": np.asarray([len(tokens[i][j]) for i, j in cells], np.int64),
        "tokens": np.concatenate([np.asarray(tokens[i][j], np.int32) for i, j in cells] or [[]]),
        "logprobs": np.concatenate(
            [np.asarray(logprobs[i][j], np.float32) for i, j in cells] or [[]]
        ),
    }
    for part in allgather_arrays(mine, what=what):
        ends = np.cumsum(part["lengths"])
        for (i, j), end, n in zip(part["cells"].tolist(), ends, part["lengths"], strict=True):
            tokens[i][j] = part["tokens"][end - n : end].astype(np.int32)
            logprobs[i][j] = part["logprobs"][end - n : end].astype(np.float32)

"""On-disk cache of converted model parameters (orbax), restored straight onto a mesh.

A model converted from GGUF or a Hugging Face folder is saved once under the cache
directory (``$WASP_JAX_CACHE``, default ``~/.cache/wasp_jax``) and later restored with
the shardings the caller asks for, so that a large model never has to be materialised
replicated on one device first.

The helpers are generic: ``state`` may be an ``nnx.State`` or any pytree of arrays. The
BERT encoder (``wasp_jax.models.bert``) and the task model's checkpoints use the same functions.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
from typing import Any

import jax
import numpy as np
from flax import nnx

_DONE = "wasp_jax_meta.json"
CACHE_FORMAT = 1


def cache_root(cache_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """Returns ``cache_dir``, else ``$WASP_JAX_CACHE``, else ~/.cache/wasp_jax."""
    if cache_dir is None:
        cache_dir = os.environ.get("WASP_JAX_CACHE") or os.path.join("~", ".cache", "wasp_jax")
    return pathlib.Path(cache_dir).expanduser()


def _to_pure(state: Any) -> Any:
    if isinstance(state, nnx.State):
        return state.to_pure_dict()
    return state


def is_cached(path: str | os.PathLike) -> bool:
    """True if ``path`` holds a complete checkpoint written by :func:`save_state`."""
    return (pathlib.Path(path) / _DONE).is_file()


def read_meta(path: str | os.PathLike) -> dict:
    """Returns the metadata dict stored next to a checkpoint by :func:`save_state`."""
    return json.loads((pathlib.Path(path) / _DONE).read_text())


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def sweep_stale(folder: str | os.PathLike) -> list[pathlib.Path]:
    """Removes what an interrupted write left in `folder`: entries named "<name>.tmp<pid>"
    (optionally followed by a suffix) whose process is gone. A live writer's are kept, so
    runs sharing one cache do not disturb each other. Returns the removed paths."""
    folder = pathlib.Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        m = re.search(r"\.tmp(\d+)(\.[A-Za-z0-9]+)?$", p.name)
        if m is None or _pid_alive(int(m.group(1))):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def save_state(path: str | os.PathLike, state: Any, *, meta: dict | None = None) -> None:
    """Saves a pytree of arrays (or an ``nnx.State``) to ``path`` with orbax.

    The checkpoint is written to a temporary sibling directory and renamed into place,
    and a small JSON marker (with ``meta``) is written last, so an interrupted save is
    never mistaken for a complete one.

    Args:
      path: target directory; replaced if it exists.
      state: ``nnx.State`` or pytree of ``jax.Array`` / ``np.ndarray``.
      meta: optional JSON-serialisable metadata (e.g. the model config).
    """
    import orbax.checkpoint as ocp  # a quarter second to import; runs on tiny models never do

    path = pathlib.Path(path).expanduser().absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(path.parent)  # a conversion killed before its rename left a tmp folder
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    pure = jax.tree.map(lambda x: x if isinstance(x, jax.Array) else np.asarray(x), _to_pure(state))
    # Uncompressed: restoring is what happens on every run, and zstd roughly doubled its
    # time on a 2-core CPU for a ~35 % smaller file.
    with ocp.Checkpointer(ocp.PyTreeCheckpointHandler(use_compression=False)) as ckptr:
        ckptr.save(tmp / "state", args=ocp.args.PyTreeSave(pure))
    (tmp / _DONE).write_text(json.dumps({"format": CACHE_FORMAT, **(meta or {})}))
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)


def restore_state(path: str | os.PathLike, abstract_state: Any, shardings: Any = None) -> Any:
    """Restores a checkpoint written by :func:`save_state`.

    Args:
      path: directory given to :func:`save_state`.
      abstract_state: the expected structure: an ``nnx.State`` (e.g. from
        ``nnx.state(nnx.eval_shape(...))``) or a pytree whose leaves have ``shape`` and
        ``dtype`` (``jax.ShapeDtypeStruct`` or arrays). Leaves are restored in this dtype.
      shardings: optional pytree of ``jax.sharding.Sharding`` with the same structure as
        ``abstract_state`` (an ``nnx.State`` of shardings is accepted too). ``None``
        places every leaf on the default device.

    Returns:
      The restored state, of the same kind as ``abstract_state`` (an ``nnx.State`` when
      one was given, else the pytree).

    Raises:
      FileNotFoundError: if ``path`` holds no complete checkpoint.
    """
    import orbax.checkpoint as ocp  # see save_state

    path = pathlib.Path(path).expanduser().absolute()
    if not is_cached(path):
        raise FileNotFoundError(
            f"no complete wasp_jax checkpoint at {path}; save one with save_state() first"
        )
    pure_abs = _to_pure(abstract_state)
    if shardings is None:
        dev = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        pure_shard = jax.tree.map(lambda _: dev, pure_abs)
    else:
        pure_shard = _to_pure(shardings)
    target = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), pure_abs, pure_shard
    )
    restore_args = jax.tree.map(
        lambda a: ocp.ArrayRestoreArgs(sharding=a.sharding, dtype=a.dtype), target
    )
    with ocp.Checkpointer(ocp.PyTreeCheckpointHandler()) as ckptr:
        restored = ckptr.restore(
            path / "state", args=ocp.args.PyTreeRestore(target, restore_args=restore_args)
        )
    if isinstance(abstract_state, nnx.State):
        out = jax.tree.map(lambda x: x, abstract_state)
        nnx.replace_by_pure_dict(out, restored)
        return out
    return restored

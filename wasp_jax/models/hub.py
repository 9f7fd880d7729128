"""Models named by their Hugging Face hub id, read from the local Hugging Face cache.

``meta-llama/Llama-2-7b-chat-hf`` resolves, as transformers resolves it, to the snapshot folder
of that repository in the hub cache (``HF_HUB_CACHE``, else ``HF_HOME/hub``, else
``~/.cache/huggingface/hub``), through ``huggingface_hub`` with ``local_files_only``: nothing is
downloaded. An id that is not cached gets one line naming the command that downloads it.
"""

from __future__ import annotations

import os
import pathlib
import re

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def looks_like_hub_id(spec: str) -> bool:
    """``owner/name`` that is not an existing path."""
    return bool(_HUB_ID.match(spec)) and not pathlib.Path(spec).expanduser().exists()


def cache_dir() -> pathlib.Path:
    """The hub cache as the environment names it now (read at call time, not import time)."""
    if os.environ.get("HF_HUB_CACHE"):
        return pathlib.Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface"
    )
    return pathlib.Path(home).expanduser() / "hub"


def snapshot(repo_id: str, revision: str | None = None) -> pathlib.Path:
    """The cached snapshot folder of `repo_id`.

    Raises:
      ValueError: the id is not in the local cache (the message names the download command).
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        path = snapshot_download(
            repo_id, revision=revision, cache_dir=str(cache_dir()), local_files_only=True
        )
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        raise ValueError(
            f"model {repo_id!r} is not in the local Hugging Face cache ({cache_dir()}); "
            f"download it first with: huggingface-cli download {repo_id}"
        ) from None
    return pathlib.Path(path)

"""The on-disk response cache of API PLMs: one JSON file per generated sample.

An entry's key is the SHA-256 of the endpoint, the model, the endpoint kind, the exact request
body (messages or prompt and every sampling parameter, without ``n``), the request's seed and
the sample's index. The API key is no part of it and is never written. Entries are written
atomically (temp file, then rename), so a killed run leaves whole entries or none; a resumed
or repeated run reads them instead of asking again, and a run whose server is gone completes
when every request it makes is cached.

An entry holds the request (public instructions and synthetic samples only: WASP's prompts
never carry a private text), the sample's text and the usage of the request that produced it.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
from typing import Any

from wasp_jax import data as data_io


def request_key(endpoint: str, kind: str, body: dict[str, Any], seed: int, index: int) -> str:
    """The cache key of sample `index` of the request `body` sent with `seed`."""
    material = {"endpoint": endpoint, "kind": kind, "body": body, "seed": seed, "index": index}
    text = json.dumps(material, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ResponseCache:
    """A folder of cached samples (see the module docstring)."""

    def __init__(self, root: str | pathlib.Path):
        self.root = pathlib.Path(root).expanduser()

    def _path(self, key: str) -> pathlib.Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The entry of `key`, or None when absent or unreadable (then it is asked again)."""
        path = self._path(key)
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None
        if not isinstance(entry, dict) or not isinstance(entry.get("text"), str):
            return None
        return entry

    def put(self, key: str, entry: dict[str, Any]) -> None:
        data_io.atomic_write_json(self._path(key), entry, indent=None)

    def entries(self):
        """Every readable entry (for audits such as the privacy scan)."""
        for path in sorted(self.root.glob("*/*.json")):
            try:
                yield json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue

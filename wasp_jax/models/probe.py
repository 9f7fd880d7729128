"""Cheap checks that a path given as a model is one the loaders can read, before any work.

`checkpoint_problem(path, kind)` looks only at file names, a GGUF file's magic bytes and a
folder's `config.json`; it loads no weights. The loaders stay the authority (a file can
pass here and still be corrupt); this catches the common mistakes at start-up: a path to
some other file, an empty folder, a folder without weights or without a tokenizer.
"""

from __future__ import annotations

import json
import os
import pathlib

#: What each kind of model is, for messages.
EXPECTED = {
    "plm": "a .gguf file or a Hugging Face causal-LM folder (config.json, *.safetensors, "
    "tokenizer files)",
    "embedder": "a Hugging Face BERT folder (config.json, *.safetensors, tokenizer files)",
}
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt")


def checkpoint_problem(path: str | os.PathLike, kind: str) -> str | None:
    """What makes `path` unusable as a model of `kind` ("plm" or "embedder"), or None."""
    path = pathlib.Path(path).expanduser()
    if path.is_file():
        if kind == "plm" and path.suffix == ".gguf":
            try:
                with open(path, "rb") as fh:
                    magic = fh.read(4)
            except OSError as err:
                return f"cannot be read ({err.strerror})"
            return None if magic == b"GGUF" else "has a .gguf name but is not a GGUF file"
        return "is a file that is not a model checkpoint"
    if not path.is_dir():
        return "is neither a file nor a folder"
    try:
        names = {p.name for p in path.iterdir()}
    except OSError as err:
        return f"cannot be read ({err.strerror})"
    if not names:
        return "is an empty folder"
    if "config.json" not in names:
        return "has no config.json"
    try:
        cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "has a config.json that is not valid JSON"
    if not isinstance(cfg, dict) or not ({"model_type", "architectures"} & cfg.keys()):
        return "has a config.json that names no model_type or architectures"
    if not any(n.endswith(".safetensors") for n in names):
        return "has no *.safetensors weights"
    if not any(n in names for n in _TOKENIZER_FILES):
        return f"has no tokenizer ({', '.join(_TOKENIZER_FILES)})"
    return None

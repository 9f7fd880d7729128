"""``wasp-jax embed``: embed the lines of a file (smoke command).

    wasp-jax embed --model all-minilm-l6-v2 reviews.jsonl --out reviews.npy
    wasp-jax embed --model tiny-bert notes.txt

FILE is JSON Lines with a "text" field (``.jsonl`` / ``.json``) or plain text, one text per
non-empty line. Without ``--out`` it prints the shape and the first values. Nothing is cached.
"""

from __future__ import annotations

import argparse
import json
import pathlib

from wasp_jax.errors import UsageError


def read_texts(path: str | pathlib.Path) -> list[str]:
    """Texts of a JSONL file (field "text") or of a plain-text file (non-empty lines).

    Raises:
      UsageError: missing file, malformed JSON (with its line number), missing "text" field.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    lines = path.read_text(encoding="utf-8").splitlines()
    if path.suffix not in (".jsonl", ".json"):
        return [line for line in lines if line.strip()]
    texts = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise UsageError(
                f"{path}:{lineno}: line {lineno} is not valid JSON ({err.msg})"
            ) from None
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise UsageError(f"{path}: line {lineno} has no string field 'text'")
        texts.append(row["text"])
    return texts


def register_embed(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="JSONL with a 'text' field, or plain lines")
    parser.add_argument(
        "--model",
        default="all-minilm-l6-v2",
        help="all-minilm-l6-v2, tiny-bert, a BERT folder or a sentence-T5 folder",
    )
    parser.add_argument("--out", help="write the [n, d] float32 array to this .npy file")
    parser.add_argument("--max-length", type=int, default=256, help="truncation, in tokens")
    parser.add_argument("--batch-size", type=int, default=64)


def main_embed(args: argparse.Namespace) -> int:
    import numpy as np

    from wasp_jax.models.embedder import load_embedder

    texts = read_texts(args.file)
    if not texts:
        raise UsageError(f"{args.file}: no texts found")
    try:
        embedder = load_embedder(args.model, max_length=args.max_length, batch_size=args.batch_size)
    except (ValueError, FileNotFoundError) as err:
        raise UsageError(str(err)) from None
    emb = embedder.embed(texts, progress=args.out is not None)
    if args.out:
        np.save(args.out, emb)
        print(f"wrote {args.out}: shape {emb.shape} float32 ({embedder.name})")
    else:
        print(f"{embedder.name}: shape {emb.shape}")
        for text, row in zip(texts[:3], emb[:3]):
            print(f"{np.array2string(row[:6], precision=4)} ... {text[:60]!r}")
    return 0

"""The IMDb candidate pools and test rows, embedded once and reused (public data only).

    python -m experiments.imdb_pools [--per-pool 1000] [--test 1000]

The six WASP pools in ``../shared/data/imdb_synthetic/`` are read per class in file order
(exact duplicates dropped, equal class halves) and embedded with all-MiniLM-L6-v2 at 128
tokens through the embedder's disk cache (``runs/embed_cache``), so the signal benchmark and
the WASP+ table rows embed each text once. Only synthetic pool rows and public test rows go
through the cache; the private reviews are embedded in memory by whoever needs them.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib

import numpy as np

from wasp_jax import data as data_io

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = data_io.shared_data_dir()
POOLS = (
    "gpt2-xl",
    "llama-2-7b-chat-hf",
    "vicuna-7b-1.5v",
    "opt-6.7b",
    "chatglm3-6b-base",
    "flan-t5-xl",
)
LABELS = ("negative", "positive")
EMBEDDER = "all-minilm-l6-v2"
MAX_LENGTH = 128
CACHE = REPO / "runs" / "embed_cache"


@dataclasses.dataclass(frozen=True)
class Pool:
    """Candidate rows of every pool: texts, labels, pool ids and (optionally) embeddings."""

    texts: list[str]
    labels: np.ndarray
    plm: np.ndarray
    names: tuple[str, ...]
    emb: np.ndarray | None = None


def read_rows(path, limit: int = 0) -> list[dict]:
    rows = data_io.read_labeled_jsonl(path, label_names=LABELS, what="IMDb data")
    return rows[:limit] if limit else rows


def pool_rows(per_pool: int, pools: tuple[str, ...] = POOLS) -> Pool:
    """The first ``per_pool`` distinct rows of each pool, half per class, in file order."""
    texts, labels, plm = [], [], []
    for k, name in enumerate(pools):
        quotas = [per_pool - per_pool // 2, per_pool // 2]
        seen: set[str] = set()
        for r in read_rows(SHARED / "imdb_synthetic" / f"{name}.jsonl"):
            c = r["label"]
            if quotas[c] > 0 and r["text"] not in seen:
                seen.add(r["text"])
                texts.append(r["text"])
                labels.append(c)
                plm.append(k)
                quotas[c] -= 1
    return Pool(texts, np.asarray(labels, np.int32), np.asarray(plm, np.int32), tuple(pools))


def embedder():
    from wasp_jax.models.embedder import load_embedder

    return load_embedder(EMBEDDER, max_length=MAX_LENGTH, cache_path=CACHE)


def embed_public(emb, texts: list[str], chunk: int = 256) -> np.ndarray:
    """Embeds public texts in chunks through the disk cache (a killed job keeps its work)."""
    parts = [emb.embed(texts[i : i + chunk], cache=True) for i in range(0, len(texts), chunk)]
    return np.concatenate(parts) if parts else np.zeros((0, emb.dim), np.float32)


def embedded_pool(per_pool: int, emb=None) -> Pool:
    pool = pool_rows(per_pool)
    emb = emb or embedder()
    return dataclasses.replace(pool, emb=embed_public(emb, pool.texts))


def embedded_test(n: int, emb=None) -> tuple[np.ndarray, np.ndarray]:
    rows = read_rows(SHARED / "imdb" / "test.jsonl", n)
    emb = emb or embedder()
    x = embed_public(emb, [r["text"] for r in rows])
    return x, np.asarray([r["label"] for r in rows], np.int32)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-pool", type=int, default=1000)
    ap.add_argument("--test", type=int, default=1000)
    args = ap.parse_args(argv)
    emb = embedder()
    pool = embedded_pool(args.per_pool, emb)
    x, _ = embedded_test(args.test, emb)
    print(f"pool rows {pool.emb.shape}, test rows {x.shape}, cache {CACHE}")


if __name__ == "__main__":
    main()

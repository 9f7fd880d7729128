"""Protocol fakes for pipeline tests: a word-sampling generator and a hashing embedder.

They follow `wasp_jax.plm.Generator.generate` and `wasp_jax.embed.Embedder.embed` exactly
(same arguments, same per-sample key derivation `fold_in(key, i * num_samples + j)`), so the
runner code paths are the production ones; only the models are cheap.
"""

from __future__ import annotations

import hashlib
import re

import jax
import numpy as np

WORDS = {
    "negative": "awful boring dull weak bland clumsy tedious flat poor messy".split(),
    "positive": "great moving brilliant warm sharp lovely vivid strong fresh superb".split(),
    "neutral": "film plot actor scene story cast script camera music ending".split(),
}


class FakeGenerator:
    """Samples words biased towards the sentiment named last in the prompt."""

    def __init__(self, name: str = "fake", bad_rate: float = 0.15):
        self.name = name
        self.bad_rate = bad_rate
        self.calls = 0

    def generate(
        self,
        prompts,
        *,
        num_samples=1,
        max_new_tokens,
        min_new_tokens=0,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        stop=(),
        key,
        chat=None,
        progress=None,
    ):
        self.calls += 1
        out = []
        for i, prompt in enumerate(prompts):
            tail = prompt[-300:]
            pos = tail.rfind("positive") > tail.rfind("negative")
            vocab = WORDS["positive" if pos else "negative"] + WORDS["neutral"]
            row = []
            for j in range(num_samples):
                k = jax.random.fold_in(key, i * num_samples + j)
                seed = int(np.asarray(jax.random.key_data(k)).ravel()[-1])
                rng = np.random.default_rng([seed, len(self.name)])
                n = int(rng.integers(3, max(4, min(max_new_tokens, 30))))
                text = " ".join(rng.choice(vocab, size=n)) + "."
                if rng.random() < self.bad_rate:
                    text = "short"  # dropped by the min-words rule
                text += '" and more' if rng.random() < 0.5 else ""
                for s in stop:
                    if s in text:
                        text = text[: text.index(s)]
                row.append(text)
            out.append(row)
        return out


class FakeEmbedder:
    """Unit-norm bag of hashed words (deterministic, order-free)."""

    def __init__(self, dim: int = 32):
        self.dim = dim
        self.num_encoded = 0
        self.seen_texts: list[str] = []

    def embed(self, texts, *, progress=False, cache=False):
        texts = list(texts)
        self.num_encoded += len(texts)
        self.seen_texts.extend(texts)
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            for w in re.findall(r"\w+", t.lower()):
                h = int.from_bytes(hashlib.sha256(w.encode()).digest()[:4], "little")
                out[i, h % self.dim] += 1.0 if (h >> 8) & 1 else -1.0
            out[i, 0] += 1e-3
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def loaders():
    """(load_generator, load_embedder) replacements for `runner.Hooks`."""
    gens: dict[str, FakeGenerator] = {}

    def load_generator(spec, **kw):
        return gens.setdefault(spec, FakeGenerator(spec))

    def load_embedder(spec, **kw):
        return FakeEmbedder()

    return load_generator, load_embedder


def fail_on_call(real, n: int, error: Exception):
    """`real`, except that its n-th call raises `error` (a crash at a chosen point)."""
    calls = {"n": 0}

    def wrapped(*a, **k):
        calls["n"] += 1
        if calls["n"] == n:
            raise error
        return real(*a, **k)

    return wrapped


def worded(gen, min_words: int = 4):
    """Re-spells a real (tiny, byte-level) generator's samples as words, one per sampled
    character, so that the run's text filters keep them while every sample still comes
    from the model's own weights (tuned or not). Changes `gen`'s class in place."""
    vocab = WORDS["positive"] + WORDS["negative"]
    base_cls = type(gen)

    def spell(text: str) -> str:
        words = [vocab[ord(ch) % len(vocab)] for ch in text]
        return " ".join(words) + "." if len(words) >= min_words else "short"

    class Worded(base_cls):
        def generate(self, prompts, **kw):
            out = base_cls.generate(self, prompts, **kw)
            return [[spell(t) for t in row] for row in out]

    gen.__class__ = Worded
    return gen

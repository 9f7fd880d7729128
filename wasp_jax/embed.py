"""Public entry point for sentence embeddings: `load_embedder(name) -> Embedder`.

The implementation is `wasp_jax.models.embedder`; this module keeps the short import path.
"""

from wasp_jax.models.embedder import Embedder, load_embedder

__all__ = ["Embedder", "load_embedder"]

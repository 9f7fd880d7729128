"""Public entry point for text generation: `load_generator(name) -> Generator`.

The implementation is `wasp_jax.models.generator`; this module keeps the short import path.
"""

from wasp_jax.models.generator import GenerationOutput, Generator, load_generator

__all__ = ["GenerationOutput", "Generator", "load_generator"]

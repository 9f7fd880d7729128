"""wasp-jax: differentially private synthetic text via weighted multi-PLM fusion (WASP), in JAX.

Layers (see README):
  kernels/    pure array -> array functions (voting, noise, selection, PLM weights)
  wasp_jax/   host-side stages: models, generation, embedding, accounting, runner, CLI
"""

__version__ = "0.1.0"

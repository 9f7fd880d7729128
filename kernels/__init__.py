"""Pure, jit-free array kernels for WASP's DP voting stage.

These functions are not jit-decorated at definition; `wasp_jax` jits them at its
boundary with static arguments and shardings.
"""

__all__: list[str] = []

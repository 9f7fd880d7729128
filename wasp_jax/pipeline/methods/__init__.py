"""The methods: one module per way of building the synthetic set, each a `base.Method`.

`registry` maps the config's `method` name to its plug-in; importing this package registers
the built-in ones (wasp, aug_pe, zerogen, multi_zeroshot, random_control, replay, wasp_plus,
wasp_proto).
"""

from wasp_jax.pipeline.methods import (  # noqa: F401  (each module registers its method)
    aug_pe,
    random_control,
    replay,
    wasp,
    wasp_plus,
    wasp_proto,
    zero_shot,
)
from wasp_jax.pipeline.methods.base import Method
from wasp_jax.pipeline.methods.registry import (
    get,
    names,
    privacy_plan,
    register_method,
    resolve,
    unregister_method,
    with_method,
)

__all__ = [
    "Method",
    "get",
    "names",
    "privacy_plan",
    "register_method",
    "resolve",
    "unregister_method",
    "with_method",
]

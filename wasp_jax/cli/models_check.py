"""Model names in a config: a registry name, a Hugging Face id in the local cache, an API
spec or a checkpoint path, checked before anything runs."""

from __future__ import annotations

import difflib
import os

from wasp_jax.config.api import api_kind
from wasp_jax.errors import UsageError


def known_models(kind: str) -> list[str]:
    """Registry names the loaders accept (`kind` "plm" or "embedder")."""
    from wasp_jax.models import registry  # heavy (jax via models/__init__): only to list names

    if kind == "plm":
        return list(registry.supported())
    return registry.supported_encoders()


def check_model(spec: str, key: str, kind: str) -> None:
    """A model spec must be a registry name or a checkpoint file/folder the loaders can read.

    Raises:
      UsageError: naming the closest registry name and listing all of them.
    """
    if kind == "plm" and api_kind(spec):
        return  # an API PLM: its endpoint is checked when it is loaded
    from wasp_jax.models import hub

    if hub.looks_like_hub_id(spec):
        try:
            spec = str(hub.snapshot(spec))  # checked below like any folder
        except ValueError as err:
            raise UsageError(f"{key}: {err}") from None
    if os.path.exists(spec):
        from wasp_jax.models.probe import EXPECTED, checkpoint_problem

        problem = checkpoint_problem(spec, kind)
        if problem:
            raise UsageError(f"{key}: {spec!r} {problem}; expected {EXPECTED[kind]}")
        return
    names = known_models(kind)
    if spec not in names:
        close = difflib.get_close_matches(spec, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UsageError(
            f"{key}: unknown model {spec!r}{hint} (known: {', '.join(sorted(names))}; "
            "or a Hugging Face id in the local cache, or the path of a checkpoint file or folder)"
        )

"""PLMs behind OpenAI-compatible HTTP APIs (OpenAI, vLLM, TGI, llama.cpp's server).

A PLM spec ``openai:MODEL`` uses the chat-completions endpoint and ``openai-completions:MODEL``
the completions endpoint; `load_api_generator` returns an `ApiGenerator` with the interface of
the Flax `wasp_jax.models.generator.Generator`. Settings come from the ``api`` config section
(`wasp_jax.config.api.ApiConfig`); see `generator`, `client`, `cache` and `spend`.
"""

from __future__ import annotations

import pathlib

from wasp_jax.config.api import ApiConfig, api_kind
from wasp_jax.models.api.cache import ResponseCache, request_key
from wasp_jax.models.api.client import ApiError, Endpoint, resolve_base_url
from wasp_jax.models.api.generator import ApiGenerator
from wasp_jax.models.api.spend import Limits, Spend, SpendLimitError, add_usage


def is_api_spec(spec: str) -> bool:
    """Whether `spec` names an API PLM (``openai:...`` or ``openai-completions:...``)."""
    return isinstance(spec, str) and api_kind(spec) is not None


def limits_of(api: ApiConfig) -> Limits:
    return Limits(api.max_requests, api.max_tokens, api.max_cost)


def load_api_generator(
    spec: str,
    *,
    api: ApiConfig | None = None,
    cache_dir: str | pathlib.Path | None = None,
    spend: Spend | None = None,
) -> ApiGenerator:
    """An `ApiGenerator` for `spec`; nothing is sent until the first uncached request.

    Args:
      spec: ``openai:MODEL`` or ``openai-completions:MODEL``.
      api: endpoints, keys, throughput and caps (default: `ApiConfig()`).
      cache_dir: the response cache folder; None = no cache.
      spend: the run's shared `Spend` (caps and totals); default: a fresh one from `api`.
    """
    kind = api_kind(spec)
    if kind is None:
        raise ValueError(
            f"{spec!r} is not an API PLM spec (openai:MODEL or openai-completions:MODEL)"
        )
    api = api or ApiConfig()
    model = spec.partition(":")[2]
    url = resolve_base_url(api.base_url_of(spec), allow_http=api.allow_http, spec=spec)
    endpoint = Endpoint(
        spec, url, api.key_env_of(spec), timeout=api.timeout, retries=api.max_retries
    )
    return ApiGenerator(
        spec,
        kind,
        model,
        endpoint,
        cache=None if cache_dir is None else ResponseCache(cache_dir),
        spend=spend if spend is not None else Spend(limits_of(api)),
        concurrency=api.concurrency,
        n_per_request=api.n_per_request,
        system_message=api.system_message,
        price=api.price_of(spec),
    )


__all__ = [
    "ApiError",
    "ApiGenerator",
    "Limits",
    "ResponseCache",
    "Spend",
    "SpendLimitError",
    "add_usage",
    "is_api_spec",
    "limits_of",
    "load_api_generator",
    "request_key",
]

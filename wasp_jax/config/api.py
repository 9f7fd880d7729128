"""`ApiConfig`: PLMs served through OpenAI-compatible HTTP APIs (the ``api`` config section).

A PLM spec ``openai:MODEL`` uses the chat-completions endpoint, ``openai-completions:MODEL``
the completions endpoint (`wasp_jax.models.api`). Settings that differ per PLM are written as
``"SPEC=VALUE"`` strings, so two servers can be mixed in one run:

    api.base_urls = ("openai-completions:smollm2=http://127.0.0.1:8080/v1",)
    api.key_envs = ("openai:gpt-4o=MY_OPENAI_KEY",)
    api.prices = ("openai:gpt-4o=2.5/10",)  # USD per million prompt / completion tokens

The API key itself never appears in a config: only the name of the environment variable that
holds it. The response cache folder is `generation.api_cache_dir`.
"""

from __future__ import annotations

import dataclasses
import math

from wasp_jax.errors import ConfigError

#: Spec prefixes of API PLMs -> endpoint kind.
API_PREFIXES = {"openai": "chat", "openai-completions": "completions"}

#: Fields that may change between a run and its resume without changing its results.
RESULT_NEUTRAL = (
    "concurrency",
    "timeout",
    "max_retries",
    "max_requests",
    "max_tokens",
    "max_cost",
    "prices",
    "key_env",
    "key_envs",
    "allow_http",
)


def api_kind(spec: str) -> str | None:
    """ "chat" or "completions" for an API PLM spec, None for a local one."""
    prefix, sep, model = spec.partition(":")
    if not sep or prefix not in API_PREFIXES:
        return None
    return API_PREFIXES[prefix] if model else None


def _fail(field: str, msg: str) -> None:
    raise ConfigError(f"api.{field}: {msg}")


def parse_per_plm(entries: tuple[str, ...], field: str) -> dict[str, str]:
    """``("SPEC=VALUE", ...)`` -> {spec: value}; a malformed or repeated entry is an error."""
    out: dict[str, str] = {}
    for item in entries:
        spec, sep, value = item.partition("=")
        spec, value = spec.strip(), value.strip()
        if not sep or not spec or not value:
            _fail(field, f"entry {item!r} must look like 'SPEC=VALUE' (e.g. 'openai:gpt-4o=...')")
        if api_kind(spec) is None:
            _fail(
                field,
                f"entry {item!r} does not name an API PLM (openai:... or openai-completions:...)",
            )
        if spec in out:
            _fail(field, f"{spec!r} is given twice")
        out[spec] = value
    return out


def parse_price(text: str) -> tuple[float, float]:
    """``"IN/OUT"`` (USD per million prompt / completion tokens) -> (in, out)."""
    parts = text.split("/")
    try:
        vals = tuple(float(p) for p in parts)
    except ValueError:
        vals = ()
    if len(vals) != 2 or not all(math.isfinite(v) and v >= 0 for v in vals):
        _fail("prices", f"price {text!r} must be 'IN/OUT' USD per million tokens, e.g. '2.5/10'")
    return vals


@dataclasses.dataclass(frozen=True)
class ApiConfig:
    """OpenAI-compatible API PLMs: endpoints, keys, throughput, faults and spending caps.

    Attributes:
        base_url: endpoint of every API PLM without its own entry in `base_urls`; "" reads
            ``$OPENAI_BASE_URL`` and falls back to OpenAI's own endpoint.
        base_urls: ``"SPEC=URL"`` per PLM.
        key_env: environment variable holding the API key (the key is never stored).
        key_envs: ``"SPEC=ENV_VAR"`` per PLM.
        allow_http: accept ``http://`` endpoints that are not loopback addresses (keys and
            prompts then travel unencrypted); loopback ``http://`` is always accepted.
        system_message: chat endpoint only: a system message sent before the prompt.
        concurrency: requests in flight at once, per PLM.
        timeout: seconds to wait for one response.
        max_retries: retries of one request (429 with Retry-After, 5xx, timeouts, dropped
            connections, malformed responses), with exponential backoff and jitter.
        n_per_request: ask for all samples of a prompt in one request (``n > 1``); a server
            that refuses that ``n`` gets smaller requests, down to one per sample (distinct
            seeds); False: always one request per sample.
        max_requests, max_tokens, max_cost: per-run caps on requests sent, tokens used
            (prompt + completion) and cost in USD; None = no cap. Checked before each request.
        prices: ``"SPEC=IN/OUT"``: USD per million prompt / completion tokens.
    """

    base_url: str = ""
    base_urls: tuple[str, ...] = ()
    key_env: str = "OPENAI_API_KEY"
    key_envs: tuple[str, ...] = ()
    allow_http: bool = False
    system_message: str = ""
    concurrency: int = 4
    timeout: float = 60.0
    max_retries: int = 5
    n_per_request: bool = True
    max_requests: int | None = None
    max_tokens: int | None = None
    max_cost: float | None = None
    prices: tuple[str, ...] = ()

    def __post_init__(self):
        if not 1 <= self.concurrency <= 256:
            _fail("concurrency", f"must be in [1, 256], got {self.concurrency}")
        if not 0 < self.timeout <= 3600:
            _fail("timeout", f"must be in (0, 3600] seconds, got {self.timeout}")
        if not 0 <= self.max_retries <= 100:
            _fail("max_retries", f"must be in [0, 100], got {self.max_retries}")
        for name in ("max_requests", "max_tokens"):
            v = getattr(self, name)
            if v is not None and v < 0:
                _fail(name, f"must be >= 0 or None (no cap), got {v}")
        if self.max_cost is not None and not self.max_cost >= 0:
            _fail("max_cost", f"must be >= 0 or None (no cap), got {self.max_cost}")
        if not self.key_env:
            _fail("key_env", "must name an environment variable")
        parse_per_plm(self.base_urls, "base_urls")
        parse_per_plm(self.key_envs, "key_envs")
        for price in parse_per_plm(self.prices, "prices").values():
            parse_price(price)

    def base_url_of(self, spec: str) -> str:
        return parse_per_plm(self.base_urls, "base_urls").get(spec, self.base_url)

    def key_env_of(self, spec: str) -> str:
        return parse_per_plm(self.key_envs, "key_envs").get(spec, self.key_env)

    def price_of(self, spec: str) -> tuple[float, float] | None:
        price = parse_per_plm(self.prices, "prices").get(spec)
        return None if price is None else parse_price(price)

"""Usage and spending of API PLMs: per-run caps checked before each request, and counters.

`Spend` is shared by every API PLM of a run. `reserve` is called before a request is sent: it
refuses (raising `SpendLimitError`) when the request could take the run past a cap, counting
the request's worst case (all of its ``max_tokens`` completion tokens); `settle` then records
what the response used. Cache hits cost nothing and are only counted.
"""

from __future__ import annotations

import dataclasses
import threading

from wasp_jax.errors import UsageError

#: Counter names, in the order reports show them.
FIELDS = ("requests", "cache_hits", "failed", "prompt_tokens", "completion_tokens", "cost_usd")


class SpendLimitError(UsageError):
    """A per-run API cap would be exceeded (CLI exit code 2; a raised cap resumes the run)."""


def empty_usage() -> dict[str, float]:
    return {f: 0.0 if f == "cost_usd" else 0 for f in FIELDS}


def add_usage(total: dict, part: dict) -> dict:
    """Adds the counters of `part` into `total` (in place) and returns it."""
    for f in FIELDS:
        total[f] = total.get(f, 0) + part.get(f, 0)
    if "cost_usd" in total:
        total["cost_usd"] = round(float(total["cost_usd"]), 8)
    return total


@dataclasses.dataclass
class Limits:
    max_requests: int | None = None
    max_tokens: int | None = None
    max_cost: float | None = None


class Spend:
    """Run-wide API usage against `Limits` (thread-safe)."""

    def __init__(self, limits: Limits | None = None, prior: dict | None = None):
        self.limits = limits or Limits()
        self.total = add_usage(empty_usage(), prior or {})
        self._lock = threading.Lock()
        self._reserved_tokens = 0
        self._reserved_cost = 0.0

    def reserve(self, plm: str, max_tokens: int, price: tuple[float, float] | None) -> float:
        """Admits one request that may use up to `max_tokens` completion tokens, or raises."""
        lim, t = self.limits, self.total
        worst = max_tokens * (price[1] if price else 0.0) / 1e6
        with self._lock:
            used_tokens = t["prompt_tokens"] + t["completion_tokens"] + self._reserved_tokens
            problem = None
            if lim.max_requests is not None and t["requests"] + 1 > lim.max_requests:
                problem = f"{t['requests']} requests sent of api.max_requests={lim.max_requests}"
            elif lim.max_tokens is not None and used_tokens + max_tokens > lim.max_tokens:
                problem = (
                    f"{used_tokens} tokens used or reserved, and the next request may use "
                    f"{max_tokens} more, of api.max_tokens={lim.max_tokens}"
                )
            elif lim.max_cost is not None and (
                t["cost_usd"] + self._reserved_cost + worst > lim.max_cost
            ):
                problem = (
                    f"${t['cost_usd'] + self._reserved_cost:.4f} spent or reserved, and the next "
                    f"request may cost ${worst:.4f} more, of api.max_cost={lim.max_cost}"
                )
            if problem:
                raise SpendLimitError(
                    f"API cap reached before a request to {plm!r}: {problem}. Raise the cap "
                    "(--set api.max_...) and rerun the same command: the run resumes, and the "
                    "answered requests are read from the response cache for free"
                )
            t["requests"] += 1
            self._reserved_tokens += max_tokens
            self._reserved_cost += worst
        return worst

    def settle(self, max_tokens: int, reserved_cost: float, usage: dict) -> None:
        """Replaces a reservation by the usage the response reported."""
        with self._lock:
            self._reserved_tokens -= max_tokens
            self._reserved_cost -= reserved_cost
            add_usage(self.total, {k: v for k, v in usage.items() if k != "requests"})


def cost_of(prompt_tokens: int, completion_tokens: int, price) -> float:
    """USD for the tokens at `price` = (in, out) per million; 0 without a price."""
    if not price:
        return 0.0
    return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1e6

"""`ApiGenerator`: a PLM behind an OpenAI-compatible API, with the `Generator` interface.

``generate(prompts, *, num_samples, max_new_tokens, ..., stop, key)`` returns
``texts[i][j]`` like the Flax generator. Choices, each documented where it is made:

* Seeds: prompt row i gets seed ``s_i`` drawn from `key` (so a resumed stage, which reuses its
  key, sends the same requests); its samples come from one request with ``n = num_samples``
  and seed ``s_i``. A server that refuses that ``n`` (a 400, as llama.cpp does above its slot
  count) or answers with fewer choices gets smaller requests (half the ``n``, or as many as
  it gave), down to one request per sample; a request for samples j.. has seed ``s_i + j``.
* Every sample is looked up in the response cache first (key: endpoint, model, the exact
  request, ``s_i`` and j; `wasp_jax.models.api.cache`) and only the missing ones are asked.
* Requests run in parallel, up to `concurrency` at a time; the shared `Spend` admits each
  one before it is sent (the per-run caps). Cache entries are written by the calling thread.
* A malformed or empty answer is asked again, then its samples come back as "" and are counted
  as failed (the quota loop of `wasp_jax.pipeline.stages.generation` asks for replacements).
* The completions endpoint gets the prompt as is; the chat endpoint gets it as one user
  message, after `system_message` if one is set. Texts are cut before the first stop string
  (also where a server returns it). `min_new_tokens` has no API counterpart and is not sent;
  `top_k` is sent only when set (a non-standard field that local servers accept).
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from wasp_jax.models.api.cache import ResponseCache, request_key
from wasp_jax.models.api.client import ApiError, Endpoint, MalformedResponse
from wasp_jax.models.api.spend import Spend, add_usage, cost_of, empty_usage
from wasp_jax.models.generate_args import (
    check_prompts,
    check_sampling,
    check_stop,
    progress_reporter,
)

#: Most choices asked in one request before a server has refused any.
MAX_N = 128


class ApiGenerator:
    """One API PLM (see the module docstring)."""

    is_api = True

    def __init__(
        self,
        spec: str,
        kind: str,
        model: str,
        endpoint: Endpoint,
        *,
        cache: ResponseCache | None = None,
        spend: Spend | None = None,
        concurrency: int = 4,
        n_per_request: bool = True,
        system_message: str = "",
        price: tuple[float, float] | None = None,
    ):
        self.name, self.kind, self.model, self.endpoint = spec, kind, model, endpoint
        self.cache, self.spend = cache, spend or Spend()
        self.concurrency = int(concurrency)
        #: most choices asked in one request (lowered when a server refuses `n`)
        self.max_n = MAX_N if n_per_request else 1
        self.system_message, self.price = system_message, price
        self._usage = empty_usage()
        self._lock = threading.Lock()

    @property
    def path(self) -> str:
        return "/chat/completions" if self.kind == "chat" else "/completions"

    def take_usage(self) -> dict:
        """The usage counters since the last call, reset."""
        with self._lock:
            out, self._usage = self._usage, empty_usage()
        return out

    def _count(self, **part) -> None:
        with self._lock:
            add_usage(self._usage, part)

    def _body(self, prompt: str, max_new: int, temperature, top_p, top_k, stop) -> dict:
        body = {"model": self.model, "max_tokens": int(max_new)}
        if self.kind == "chat":
            msgs = [{"role": "system", "content": self.system_message}] * bool(self.system_message)
            body["messages"] = [*msgs, {"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        body["temperature"] = float(temperature)
        body["top_p"] = float(top_p)
        if top_k:
            body["top_k"] = int(top_k)
        if stop:
            body["stop"] = list(stop)
        return body

    def generate(
        self,
        prompts: Sequence[str],
        *,
        num_samples: int = 1,
        max_new_tokens: int,
        min_new_tokens: int = 0,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        stop: Sequence[str] = (),
        key: jax.Array,
        chat: bool | None = None,
        progress: bool | Callable[[int, int], None] | None = None,
    ) -> list[list[str]]:
        """Samples `num_samples` continuations of every prompt (arguments as `Generator`'s;
        `chat` is ignored: the endpoint kind decides)."""
        stop = check_stop(stop)
        prompts = check_prompts(prompts)
        if any(not isinstance(p, str) for p in prompts):
            raise TypeError("prompts must be strings")
        check_sampling(num_samples, max_new_tokens, min_new_tokens, temperature, top_p, top_k)
        seeds = _row_seeds(key, len(prompts))
        out = [[""] * num_samples for _ in prompts]
        jobs = []
        for i, prompt in enumerate(prompts):
            body = self._body(prompt, max_new_tokens, temperature, top_p, top_k, stop)
            keys = [
                request_key(self.endpoint.base_url, self.kind, body, seeds[i], j)
                for j in range(num_samples)
            ]
            missing = []
            for j, k in enumerate(keys):
                entry = self.cache.get(k) if self.cache else None
                if entry is None:
                    missing.append(j)
                else:
                    out[i][j] = _cut(entry["text"], stop)
            self._count(cache_hits=num_samples - len(missing))
            if missing:
                jobs.append((i, missing, body, keys))
        report = progress_reporter(progress, len(prompts) * num_samples)
        report(len(prompts) * num_samples - sum(len(m) for _, m, _, _ in jobs))
        self._run_jobs(jobs, seeds, num_samples, out, stop, report)
        report(None)
        return out

    def _run_jobs(self, jobs, seeds, num_samples, out, stop, report) -> None:
        if not jobs:
            return
        pool = cf.ThreadPoolExecutor(max_workers=min(self.concurrency, len(jobs)))
        futures = {
            pool.submit(self._ask, body, int(seeds[i]), missing, num_samples): (i, keys)
            for i, missing, body, keys in jobs
        }
        error = None
        try:
            for fut in cf.as_completed(futures):
                i, keys = futures[fut]
                try:
                    answers = fut.result()
                except Exception as err:  # the first failure stops the call
                    if error is None:
                        error = err
                        for f in futures:
                            f.cancel()
                    continue
                for j, text, entry in answers:
                    out[i][j] = _cut(text, stop)
                    if entry is not None and self.cache is not None:
                        self.cache.put(keys[j], entry)
                report(len(answers))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if error is not None:
            raise error

    def _ask(self, body: dict, seed: int, missing: list[int], num_samples: int):
        """Samples `missing` of one prompt: [(j, text, cache entry or None if failed)].

        Samples are asked in requests of up to `max_n` choices (the first sample j of a
        request sets its seed ``seed + j``); a server that refuses ``n`` (a 400) or answers
        with fewer choices than asked lowers `max_n` for the rest of the run.
        """
        answers, todo = [], list(missing)
        while todo:
            chunk = todo[: max(1, min(self.max_n, len(todo)))]
            got = self._request(body, (seed + chunk[0]) % 2**31, len(chunk))
            if got is None:  # unusable answers: failed samples
                answers += [(j, "", None) for j in chunk]
            elif len(got[0]) < len(chunk):  # n refused or ignored: smaller requests
                self.max_n = max(1, min(len(got[0]) or len(chunk) // 2, len(chunk) - 1))
                continue
            else:
                texts, entry = got
                answers += [
                    (j, texts[k], {**entry, "index": j, "text": texts[k]})
                    for k, j in enumerate(chunk)
                ]
            todo = todo[len(chunk) :]
        return answers

    def _request(self, body: dict, seed: int, n: int):
        """One request; (texts, entry template) or None when its answers were unusable."""
        full = {**body, "seed": int(seed)}
        if n > 1:
            full["n"] = n
        reserved = self.spend.reserve(self.name, body["max_tokens"] * n, self.price)
        usage = {"requests": 1}
        try:
            texts, tokens = self.endpoint.post(self.path, full, self._parse(n))
        except MalformedResponse:
            self.spend.settle(body["max_tokens"] * n, reserved, {})
            self._count(requests=1, failed=n)
            return None
        except ApiError as err:
            self.spend.settle(body["max_tokens"] * n, reserved, {})
            self._count(requests=1)
            if err.status == 400 and n > 1:  # the server refuses n > 1: ask one by one
                return [], {}
            raise
        usage.update(tokens, cost_usd=cost_of(*tokens.values(), self.price))
        self.spend.settle(body["max_tokens"] * n, reserved, usage)
        self._count(**usage)
        entry = {
            "endpoint": self.endpoint.base_url,
            "kind": self.kind,
            "request": full,
            "seed": int(seed),
            "usage": tokens,
        }
        return texts, entry

    def _parse(self, n: int):
        chat = self.kind == "chat"

        def check(answer):
            if not isinstance(answer, dict) or not isinstance(answer.get("choices"), list):
                raise MalformedResponse("no choices")
            choices = sorted(answer["choices"], key=lambda c: c.get("index", 0))
            texts = []
            for c in choices[:n]:
                text = (c.get("message") or {}).get("content") if chat else c.get("text")
                if not isinstance(text, str):
                    raise MalformedResponse("a choice without text")
                texts.append(text)
            if not texts:
                raise MalformedResponse("no choices")
            u = answer.get("usage") if isinstance(answer.get("usage"), dict) else {}
            tokens = {
                "prompt_tokens": int(u.get("prompt_tokens") or 0),
                "completion_tokens": int(u.get("completion_tokens") or 0),
            }
            return texts, tokens

        return check


def _row_seeds(key: jax.Array, rows: int) -> list[int]:
    """One non-negative 31-bit seed per prompt row, drawn from `key`."""
    if not jax.dtypes.issubdtype(getattr(key, "dtype", None), jax.dtypes.prng_key):
        raise TypeError("key must be a typed PRNG key from jax.random.key(seed)")
    if rows == 0:
        return []
    bits = np.asarray(jax.random.bits(key, (rows,), jnp.uint32))
    return [int(b) & 0x7FFFFFFF for b in bits]


def _cut(text: str, stop: Sequence[str]) -> str:
    cut = min((k for k in (text.find(s) for s in stop) if k >= 0), default=len(text))
    return text[:cut]

"""One API PLM's endpoint: where it is, its key, and a request with retries.

The official `openai` client does the HTTP: timeouts, and retries with exponential backoff and
jitter on 429 (honouring ``Retry-After``), 408/409, 5xx, timeouts and dropped connections.
This module adds what it lacks: a refusal of unencrypted non-loopback endpoints, a key read
from a named environment variable (and never put in a message), retries of a malformed or
empty answer, and one clear error naming the endpoint and the last status once the retries
are spent. The client is built on the first request, so a run answered wholly from the
response cache needs neither the key nor the server.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import threading
import time
import urllib.parse
from typing import Any

from wasp_jax.errors import UsageError

#: OpenAI's endpoint, used when neither the config nor $OPENAI_BASE_URL names one.
DEFAULT_BASE_URL = "https://api.openai.com/v1"


class ApiError(UsageError):
    """An API endpoint cannot be used or kept failing (CLI exit code 2).

    `status` is the last HTTP status, or None when there was no answer.
    """

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class MalformedResponse(ValueError):
    """An answer that is not the JSON of a completion with the asked-for choices."""


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_base_url(configured: str, *, allow_http: bool, spec: str) -> str:
    """The endpoint: the config's, else ``$OPENAI_BASE_URL``, else OpenAI's; checked."""
    url = (configured or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ApiError(
            f"{spec}: base URL {url!r} is not an http(s) URL; give e.g. "
            "https://api.openai.com/v1 or http://127.0.0.1:8080/v1"
        )
    if parts.username or parts.password:
        raise ApiError(f"{spec}: put no credentials in the base URL; use the key variable")
    if parts.scheme == "http" and not _is_loopback(parts.hostname) and not allow_http:
        raise ApiError(
            f"{spec}: refusing unencrypted {url!r} (prompts and the key would cross the network "
            "in clear); use https, a loopback address, or set api.allow_http=true"
        )
    return url


class Endpoint:
    """Sends requests to one base URL for one model (thread-safe)."""

    def __init__(self, spec: str, base_url: str, key_env: str, *, timeout: float, retries: int):
        self.spec, self.base_url, self.key_env = spec, base_url, key_env
        self.timeout, self.retries = float(timeout), int(retries)
        self._client = None
        self._lock = threading.Lock()

    def _get_client(self):
        with self._lock:
            if self._client is None:
                import openai  # imported on the first request only

                key = os.environ.get(self.key_env)
                if not key:
                    raise ApiError(
                        f"{self.spec}: no API key: set the environment variable {self.key_env} "
                        f"(for a local server any value works), or name another with api.key_env"
                    )
                self._client = openai.OpenAI(
                    api_key=key,
                    base_url=self.base_url,
                    timeout=self.timeout,
                    max_retries=self.retries,
                )
                self._secret = key
        return self._client

    def _scrub(self, text: str) -> str:
        secret = getattr(self, "_secret", None)
        return text.replace(secret, "***") if secret else text

    def post(self, path: str, body: dict[str, Any], check) -> dict[str, Any]:
        """POSTs `body` to `path` and returns ``check(answer)``.

        `check` raises `MalformedResponse` for an unusable answer; such answers are asked again
        (up to `retries` times, with backoff) and then re-raised. Transport failures are
        retried by the client and then raised as `ApiError`.
        """
        import openai

        client = self._get_client()
        for attempt in range(self.retries + 1):
            try:
                answer = client.post(path, cast_to=object, body=body)
                return check(answer)
            except (MalformedResponse, json.JSONDecodeError, UnicodeDecodeError, TypeError) as e:
                last = e
            except openai.APIStatusError as err:
                detail = self._scrub(_status_message(err))
                raise ApiError(
                    f"{self.spec}: {self.base_url}{path} answered status {err.status_code} "
                    f"({detail}) after {self.retries} retries; check the model name and "
                    "settings, or raise api.max_retries / try later",
                    err.status_code,
                ) from None
            except openai.APITimeoutError:
                raise ApiError(
                    f"{self.spec}: {self.base_url}{path} did not answer within "
                    f"{self.timeout:g} s, {self.retries + 1} times; raise api.timeout or check "
                    "the server"
                ) from None
            except openai.APIConnectionError:
                raise ApiError(
                    f"{self.spec}: cannot reach {self.base_url}{path} (connection failed or "
                    f"dropped, {self.retries + 1} times); start the server or fix the base URL"
                ) from None
            if attempt < self.retries:
                time.sleep(min(0.5 * 2**attempt, 8.0) * (1 - 0.25 * random.random()))
        raise MalformedResponse(
            f"{self.spec}: {self.base_url}{path} gave {self.retries + 1} unusable answers "
            f"({type(last).__name__})"
        )


def _status_message(err) -> str:
    body = getattr(err, "body", None)
    if isinstance(body, dict):
        msg = body.get("message") or (body.get("error") or {}).get("message")
        if msg:
            return str(msg)[:200]
    return type(err).__name__

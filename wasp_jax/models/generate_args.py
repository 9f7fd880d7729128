"""Host-side helpers of `wasp_jax.models.generator.Generator`.

Argument checks (prompts, stop strings, sampling settings), the per-token texts that stop
strings are matched against, and progress reporting.
"""

from __future__ import annotations

from collections.abc import Callable

from tqdm.auto import tqdm


def check_prompts(prompts) -> list[str]:
    """The prompts as a list; a bare string is refused (it would be split into characters)."""
    if isinstance(prompts, str):
        raise TypeError("prompts must be a sequence of strings; wrap a single prompt in a list")
    return list(prompts)


def check_stop(stop) -> tuple[str, ...]:
    """Stop strings as a tuple (one string is accepted); each must be non-empty."""
    if isinstance(stop, str):
        stop = (stop,)
    stop = tuple(stop)
    if any(not isinstance(s, str) or not s for s in stop):
        raise ValueError(f"stop strings must be non-empty strings, got {stop!r}")
    return stop


def token_texts(tokenizer, vocab: int) -> list[str]:
    """Text of every single token id (ids past the tokenizer's vocabulary give "")."""
    n = min(vocab, int(tokenizer.vocab_size))
    backend = getattr(tokenizer, "backend", None)
    if backend is not None and hasattr(backend, "decode_batch"):
        texts = backend.decode_batch([[i] for i in range(n)], skip_special_tokens=True)
    else:
        texts = [tokenizer.decode([i]) for i in range(n)]
    return list(texts) + [""] * (vocab - n)


def check_sampling(num_samples, max_new, min_new, temperature, top_p, top_k) -> None:
    """Raises ValueError for sampling settings outside their ranges."""
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    if max_new < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new}")
    if not 0 <= min_new <= max_new:
        raise ValueError(f"min_new_tokens must be in [0, max_new_tokens], got {min_new}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0 (0 = off), got {top_k}")


def progress_reporter(progress, total: int) -> Callable[[int | None], None]:
    """``report(k)`` adds k finished rows; ``report(None)`` ends the report.

    ``progress``: falsy (silent), True (a tqdm bar) or a callable ``(rows_done, total)``.
    """
    if not progress:
        return lambda _: None
    if callable(progress):
        done = [0]

        def call(k):
            if k is not None:
                done[0] += k
                progress(done[0], total)

        return call
    # rows are continuations, spares included (a quota of 16 may decode 32 rows at once)
    bar = tqdm(total=total, desc="generate (continuations)", unit="row")
    return lambda k: bar.close() if k is None else bar.update(k)

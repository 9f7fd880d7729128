"""`wasp-jax generate`: sample continuations of a prompt with one PLM (smoke command).

Example::

    wasp-jax generate --model smollm2-135m-instruct --prompt 'A good movie review is: "' \
        --num-samples 4 --max-new-tokens 40 --stop '"'

Heavy imports (jax, the models) happen inside `main_generate`, so `wasp-jax --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from wasp_jax.errors import UsageError


def register_generate(parser: argparse.ArgumentParser) -> None:
    """Adds the `generate` arguments."""
    parser.add_argument(
        "--model",
        required=True,
        help="registry name, checkpoint path, or openai:MODEL / openai-completions:MODEL",
    )
    parser.add_argument("--prompt", required=True, action="append", help="prompt (repeatable)")
    parser.add_argument("--num-samples", type=int, default=1, help="continuations per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--min-new-tokens", type=int, default=0)
    parser.add_argument("--greedy", action="store_true", help="argmax decoding")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=0.9)
    parser.add_argument("--top-k", type=int, default=0)
    parser.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    parser.add_argument("--chat", action="store_true", help="wrap the prompt as a chat turn")
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def main_generate(args: argparse.Namespace) -> int:
    """Loads the model, generates, prints the texts; returns the exit code."""
    _check_args(args)
    import jax

    from wasp_jax.models import generator as plm
    from wasp_jax.models import supported
    from wasp_jax.models.api import is_api_spec

    names = supported()
    known = args.model in names or is_api_spec(args.model)
    if not known and not pathlib.Path(args.model).expanduser().exists():
        raise UsageError(
            f"unknown model {args.model!r}; supported names: {', '.join(names)} "
            "(or a path to a .gguf file or a Hugging Face folder, or openai:MODEL / "
            "openai-completions:MODEL for an OpenAI-compatible API at $OPENAI_BASE_URL)"
        )
    try:
        gen = plm.load_generator(args.model, chat=args.chat)
    except (ValueError, FileNotFoundError) as err:
        raise UsageError(str(err)) from err
    texts = gen.generate(
        args.prompt,
        num_samples=args.num_samples,
        max_new_tokens=args.max_new_tokens,
        min_new_tokens=args.min_new_tokens,
        temperature=0.0 if args.greedy else args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        stop=args.stop,
        key=jax.random.key(args.seed),
    )
    if args.json:
        print(json.dumps({"model": gen.name, "prompts": args.prompt, "samples": texts}))
        return 0
    for prompt, samples in zip(args.prompt, texts):
        print(f"=== prompt: {prompt!r}")
        for j, text in enumerate(samples):
            print(f"--- sample {j}: {text}")
    sys.stdout.flush()
    return 0


def _check_args(args: argparse.Namespace) -> None:
    if args.num_samples < 1:
        raise UsageError("--num-samples must be >= 1")
    if args.max_new_tokens < 1:
        raise UsageError("--max-new-tokens must be >= 1")
    if not 0 <= args.min_new_tokens <= args.max_new_tokens:
        raise UsageError("--min-new-tokens must be between 0 and --max-new-tokens")
    if not 0 < args.top_p <= 1:
        raise UsageError("--top-p must be in (0, 1]")
    if args.temperature < 0 or args.top_k < 0:
        raise UsageError("--temperature and --top-k must be >= 0")
    if any(not s for s in args.stop):
        raise UsageError("--stop strings must be non-empty")

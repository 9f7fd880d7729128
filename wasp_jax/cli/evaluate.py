"""``wasp-jax evaluate``: train the small task model on one file, test it on another.

    wasp-jax evaluate --train runs/x/synthetic.jsonl --test data/imdb/test.jsonl \\
        --seeds 3 --mode finetune --out runs/x/eval.json

Both files are JSON Lines with "text" and integer "label" (and optionally "label_name").
``--mode finetune`` trains at ``--max-length`` (128) and tests at ``--test-max-length`` (256);
``--mode probe`` embeds both files at one length: 256, or whichever of the two flags is given
(two different values are refused). The work is `wasp_jax.stm.evaluate.evaluate_files`; this
module only parses the flags, prints a one-line summary and writes (or prints) the results
JSON. Bad input is a `UsageError`: one line on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from wasp_jax.errors import UsageError

#: = `wasp_jax.stm.evaluate.MODES`, spelled out so that `--help` does not import jax
MODES = ("finetune", "probe")


def register_evaluate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--train", required=True, help="training JSONL (text, label)")
    parser.add_argument("--test", required=True, help="test JSONL (text, label)")
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (0..N-1)")
    parser.add_argument("--mode", choices=MODES, default="finetune")
    parser.add_argument("--out", help="write the results JSON here (else print it)")
    parser.add_argument("--max-train", type=int, help="random subset of the training file")
    parser.add_argument("--max-test", type=int, help="random subset of the test file")
    parser.add_argument("--epochs", type=int, help="maximum epochs (default 3)")
    parser.add_argument("--encoder", help="all-minilm-l6-v2 (default), tiny-bert or BERT folder")
    parser.add_argument("--lr", type=float, help="peak learning rate (default 5e-5)")
    parser.add_argument("--batch-size", type=int, help="training batch size (default 16)")
    parser.add_argument(
        "--max-length",
        type=int,
        help="finetune: training truncation (default 128); probe: that of both files (256)",
    )
    parser.add_argument(
        "--test-max-length",
        type=int,
        help="finetune: test truncation (default 256); probe: that of both files (256)",
    )
    parser.add_argument("--quiet", action="store_true", help="no per-epoch / per-seed lines")


def _check_positive(args: argparse.Namespace) -> None:
    flags = (
        "seeds",
        "max_train",
        "max_test",
        "epochs",
        "batch_size",
        "max_length",
        "test_max_length",
    )
    for flag in flags:
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be >= 1, got {value}")


def _lengths(args: argparse.Namespace) -> tuple[int | None, int]:
    """(training truncation for fine-tuning or None for the default, test truncation).

    A probe embeds training and test texts alike, so in probe mode the two flags name one
    length and may not disagree.
    """
    if args.mode != "probe":
        return args.max_length, args.test_max_length or 256
    given = {v for v in (args.max_length, args.test_max_length) if v is not None}
    if len(given) > 1:
        raise UsageError(
            "--mode probe embeds training and test texts at one length; got --max-length "
            f"{args.max_length} and --test-max-length {args.test_max_length}"
        )
    return None, given.pop() if given else 256


def main_evaluate(args: argparse.Namespace) -> int:
    # imported here, not at the top: the library pulls in jax and flax, and every command's
    # module is imported to build `wasp-jax --help`
    from wasp_jax.stm.classifier import STMConfig
    from wasp_jax.stm.evaluate import evaluate_files

    _check_positive(args)
    max_length, test_max_length = _lengths(args)
    overrides = {
        "epochs": args.epochs,
        "encoder": args.encoder,
        "learning_rate": args.lr,
        "batch_size": args.batch_size,
        "max_length": max_length,
    }
    try:
        config = STMConfig(**{k: v for k, v in overrides.items() if v is not None})
        result = evaluate_files(
            args.train,
            args.test,
            mode=args.mode,
            seeds=args.seeds,
            config=config,
            max_train=args.max_train,
            max_test=args.max_test,
            out=args.out,
            test_max_length=test_max_length,
            progress=not args.quiet,
        )
    except (ValueError, FileNotFoundError) as err:
        raise UsageError(str(err)) from None
    acc, f1 = result["accuracy"], result["macro_f1"]
    # stdout carries the JSON only (pipe it into a JSON reader); the summary goes to stderr
    print(
        f"{result['mode']} on {result['train']['num_used']} texts, tested on "
        f"{result['test']['num_used']}: accuracy {acc['mean']:.4f} +/- {acc['std']:.4f}, "
        f"macro-F1 {f1['mean']:.4f} +/- {f1['std']:.4f} ({len(result['seeds'])} seeds)",
        file=sys.stderr,
    )
    if args.out:
        print(f"wrote {args.out}", file=sys.stderr)
    print(json.dumps(result, indent=2))
    return 0

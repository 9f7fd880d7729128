"""`wasp-jax prepare-private`: a new private file (a prefix or a class-skewed subsample).

    wasp-jax prepare-private --task imdb --data private.jsonl --out first_300.jsonl --num 300

A run uses every record of `data.private_path`, and its guarantee is stated for the records
of that file; this step writes the smaller file the run is then given
(`wasp_jax.pipeline.stages.prepare`). It prints how many records it wrote, never a text.
"""

from __future__ import annotations

import argparse
import pathlib

from wasp_jax.errors import TaskError, UsageError


def register_prepare_private(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, help="the run's task (a name or a task file)")
    parser.add_argument("--data", required=True, help="the labelled private JSONL file to cut")
    parser.add_argument("--out", required=True, help="the new private file to write")
    parser.add_argument("--num", type=int, default=0, help="keep the first N records (0 = all)")
    parser.add_argument(
        "--class-skew-alpha",
        type=float,
        default=0.0,
        help="keep a subsample whose class proportions follow one Dirichlet(alpha) draw "
        "(0 = off); --num then cuts its first N records",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the class-skew draws")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")


def main_prepare_private(args: argparse.Namespace) -> int:
    from wasp_jax.pipeline.stages.prepare import prepare_private  # here: keeps --help fast
    from wasp_jax.tasks import load_task

    out = pathlib.Path(args.out)
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give a file path such as {out / 'p.jsonl'}")
    if out.exists() and not args.force:
        raise UsageError(f"{out} exists; pass --force to overwrite it or choose another --out")
    if args.num < 0 or not args.class_skew_alpha >= 0 or args.seed < 0:
        raise UsageError("--num, --class-skew-alpha and --seed must be >= 0")
    if not args.num and not args.class_skew_alpha:
        raise UsageError("nothing to do: give --num N and/or --class-skew-alpha ALPHA")
    try:
        task = load_task(args.task)
    except TaskError as err:
        raise UsageError(str(err)) from None
    n = prepare_private(
        args.data,
        out,
        task=task,
        num=args.num,
        class_skew_alpha=args.class_skew_alpha,
        seed=args.seed,
    )
    print(
        f"wrote {out}: {n} records of {args.data}; set data.private_path={out} (the run's "
        "guarantee is stated for the records of that file)"
    )
    return 0

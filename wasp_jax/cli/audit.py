"""`wasp-jax audit`: an empirical lower bound on the epsilon of a config's releases.

Runs the real release function of each release kind of one round of the config many times
on a small dataset D and on its neighbour D' (one worst-case canary record apart under
``privacy.adjacency``), with sigma from the config's privacy plan, and reports a Clopper-
Pearson lower bound on epsilon of the best threshold test next to the epsilon the plan
claims for that release (`wasp_jax.audit.runner`, docs/method.md). ``--bugs`` adds the
planted-bug mechanisms, which the audit must catch. Writes ``audit.json`` and ``audit.png``
into ``--out`` once everything has run.

Exit codes: 0 when no secure release exceeds its claim, 1 when one does (a violation), 2
on bad input.

Example:
    wasp-jax audit --config experiments/configs/demo.py --trials 100000 --out runs/audit
    wasp-jax audit --config experiments/configs/demo.py --epsilon 1 --set generation.rounds=1 \\
        --bugs all --out runs/audit_eps1
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

from wasp_jax import config as config_lib
from wasp_jax.cli.pipeline import add_overrides
from wasp_jax.errors import ConfigError, UsageError


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="config file (.py or config.json)")
    parser.add_argument(
        "--trials", type=int, default=100_000, help="releases per dataset (default 100000)"
    )
    parser.add_argument(
        "--epsilon", type=float, help="audit at this total epsilon (default the config's)"
    )
    parser.add_argument(
        "--bugs",
        default="none",
        help="planted bugs to audit too: 'all', 'none' (default) or a comma list of "
        "seeded, sigma_halved, q1_sensitivity, float32",
    )
    parser.add_argument("--bug-trials", type=int, help="trials per dataset for the bugs")
    parser.add_argument("--kinds", help="comma list of release kinds to audit (default all)")
    parser.add_argument(
        "--blocks", type=int, default=32, help="trials per release call (default 32; 1: one)"
    )
    add_overrides(parser, "generation.rounds=1")
    parser.add_argument("--out", default="runs/audit", help="output folder (default runs/audit)")


def _mechanisms(bugs: str) -> list[str]:
    from wasp_jax.audit.bugs import BUGS

    if bugs == "all":
        return ["secure", *BUGS]
    if bugs == "none":
        return ["secure"]
    return ["secure", *(b.strip() for b in bugs.split(",") if b.strip())]


def main(args: argparse.Namespace) -> int:
    out = pathlib.Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; pass a folder")
    if args.epsilon is not None and not args.epsilon > 0:
        raise UsageError(f"--epsilon must be > 0, got {args.epsilon}")
    try:
        cfg = config_lib.load_config(args.config)
        cfg = config_lib.apply_overrides(cfg, args.overrides)
        if args.epsilon is not None:
            cfg = config_lib.replace(cfg, **{"privacy.epsilon": float(args.epsilon)})
    except ConfigError as err:
        raise UsageError(str(err)) from None
    from wasp_jax.audit.runner import audit
    from wasp_jax.outputs.audit_plot import audit_plot

    start = time.perf_counter()
    result, scores = audit(
        cfg,
        trials=args.trials,
        mechanisms=_mechanisms(args.bugs),
        bug_trials=args.bug_trials,
        kinds=[k.strip() for k in args.kinds.split(",")] if args.kinds else None,
        blocks=args.blocks,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    command = ["wasp-jax", "audit", "--config", args.config, "--trials", str(args.trials)]
    for flag, value in (
        ("--epsilon", args.epsilon),
        ("--bug-trials", args.bug_trials),
        ("--kinds", args.kinds),
    ):
        if value is not None:
            command += [flag, str(value)]
    command += [x for o in args.overrides for x in ("--set", o)]
    command += ["--bugs", args.bugs, "--blocks", str(args.blocks)]
    result = {"config": args.config, "command": " ".join(command), **result}
    result["seconds"] = round(time.perf_counter() - start, 1)
    from wasp_jax import data as data_io

    data_io.atomic_write_json(out / "audit.json", result)
    audit_plot(result, scores, out / "audit.png")
    print(f"wrote {out / 'audit.json'} and {out / 'audit.png'}")
    if result["violations"]:
        print(
            "wasp-jax audit: a release exceeds its claimed epsilon: "
            + ", ".join(result["violations"]),
            file=sys.stderr,
        )
        return 1
    return 0

"""The `wasp-jax` command line.

Each subcommand lives in its own module, which defines `register(parser)` (add
arguments) and `main(args) -> int` (run; return the exit code). Modules are imported
lazily so that `wasp-jax --help` stays fast.

Exit codes: 0 success, 2 bad input (a clear message names the problem and the fix),
1 unexpected failure.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from wasp_jax.errors import UsageError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("wasp_jax.cli.pipeline", "run a pipeline config into a workdir (resumes)"),
    "demo": ("wasp_jax.cli.pipeline", "run the embedded default (offline models, bundled data)"),
    "report": ("wasp_jax.cli.pipeline", "rebuild report.md and plots for a workdir"),
    "generate": ("wasp_jax.cli.generate", "generate text with a PLM (smoke command)"),
    "embed": ("wasp_jax.cli.embed", "embed the lines of a file (smoke command)"),
    "evaluate": ("wasp_jax.cli.evaluate", "train the small task model and test it"),
    "init-task": ("wasp_jax.cli.task", "draft a task JSON from a labelled JSONL file"),
    "check-task": ("wasp_jax.cli.task", "check a task JSON against a labelled JSONL file"),
    "prepare-private": (
        "wasp_jax.cli.prepare",
        "write a new private file: the first N records or a class-skewed subsample",
    ),
    "launch": ("wasp_jax.cli.launch", "run N local processes of one multi-process job"),
    "audit": ("wasp_jax.cli.audit", "empirical lower bound on the epsilon of a config's releases"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wasp-jax", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:
                raise
            continue  # subcommand not built yet
        p = sub.add_parser(name, help=help_text)
        fn = name.replace("-", "_")
        register = getattr(module, f"register_{fn}", None) or module.register
        register(p)
        p.set_defaults(_module=module_name, _command=name)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    module = importlib.import_module(args._module)
    entry = getattr(module, f"main_{args._command.replace('-', '_')}", None) or module.main
    try:
        return int(entry(args) or 0)
    except UsageError as err:
        print(f"wasp-jax {args._command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a path the user gave: unreadable, unwritable, a full disk
        where = f" ({err.filename})" if err.filename else ""
        print(f"wasp-jax {args._command}: error: {err.strerror or err}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""`wasp-jax run`, `wasp-jax demo` and `wasp-jax report`: the pipeline's command line.

`run` loads a config file (`experiments/configs/*.py` exposing `get_config()`, or a run's
`config.json`), applies `--set key=value` overrides (type-checked; an unknown key names the
closest valid one), checks every input before anything is written, and calls
`wasp_jax.pipeline.run.runner.run`, which resumes an interrupted run in the same workdir. `demo`
does the same for the embedded default (bundled private IMDb reviews, offline models). `report`
rebuilds `datasheet.md`, `report.md` and the plots of a finished run from its shareable part
(`release/`) alone, so it also works on a copy of that folder.

Bad input (a config value out of range, an unknown key or model, an unreadable or malformed
data file, a workdir that holds a different config) raises `UsageError`: one line on stderr,
exit code 2, and nothing written. Heavy modules (jax, models) are imported only when a run
starts, so `wasp-jax --help` stays fast.

Example:
    wasp-jax run --task my_task.json --private private.jsonl --test test.jsonl --workdir runs/mine
    wasp-jax run --config experiments/configs/wasp_imdb.py --workdir runs/wasp_imdb \\
        --set privacy.epsilon=1.0 --set seed=1
    wasp-jax demo --workdir runs/demo
    wasp-jax report runs/demo            # or a copy of runs/demo/release
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import pathlib
import re
import sys
import time
import warnings
from typing import Any

from wasp_jax import class_checks
from wasp_jax import config as config_lib
from wasp_jax import data as data_io
from wasp_jax.cli.launch import add_job_flags, join_job
from wasp_jax.cli.models_check import check_model, known_models  # noqa: F401 (re-exported)
from wasp_jax.data import bundled_path
from wasp_jax.errors import ConfigError, TaskError, UsageError
from wasp_jax.pipeline.run import sizing
from wasp_jax.pipeline.run.workdir import check_workdir, describe_os_error, private_dir, release_dir
from wasp_jax.tasks import load_task

# ------------------------------------------------------------------------------ parsers


def add_overrides(parser: argparse.ArgumentParser, example: str = "privacy.epsilon=1.0") -> None:
    """The repeatable `--set KEY=VALUE` flag (parsed into `args.overrides`)."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a config value, e.g. --set {example} (repeatable)",
    )


def _add_common(parser: argparse.ArgumentParser) -> None:
    add_overrides(parser)
    parser.add_argument(
        "--force",
        action="store_true",
        help="reuse a workdir that holds a different config (its old outputs are replaced)",
    )
    add_job_flags(parser)


def register_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        help="config file: a .py with get_config() or a config.json (default with --task: "
        "the WASP main line with the offline models, its budget sized for the task)",
    )
    parser.add_argument("--workdir", required=True, help="output folder (resumed if it exists)")
    parser.add_argument(
        "--task", help="a built-in task name (imdb, sst2, yelp_category, ...) or a task JSON"
    )
    parser.add_argument(
        "--private", metavar="PRIVATE.jsonl", help='private labelled texts: {"text", "label"}'
    )
    parser.add_argument(
        "--test", metavar="TEST.jsonl", help="real labelled test texts: evaluate and compare"
    )
    parser.add_argument(
        "--text-field", help="the private file's text column (data.text_field; default text)"
    )
    parser.add_argument(
        "--label-field",
        help="the private file's label column (data.label_field; default: the task's)",
    )
    _add_common(parser)


def register_demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", default="runs/demo", help="output folder (default runs/demo)")
    parser.add_argument(
        "--eval",
        action="store_true",
        help="also train the small task model and test it on the bundled real test reviews",
    )
    _add_common(parser)


def register_report(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "workdir", help="the workdir of a finished run, or a copy of its release/ folder"
    )


# ------------------------------------------------------------------------------ commands


def main_run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    if not args.config and not args.task:
        raise UsageError(
            "pass --task TASK --private PRIVATE.jsonl (the WASP main line, sized for the task) "
            "or --config FILE"
        )
    with _usage_errors():
        cfg = own_data_config(args.config, task=args.task, private=args.private, test=args.test)
        fields = {f"data.{k}": getattr(args, k) for k in ("text_field", "label_field")}
        if any(v is not None for v in fields.values()):
            cfg = config_lib.replace(cfg, **{k: v for k, v in fields.items() if v is not None})
        cfg = config_lib.apply_overrides(cfg, args.overrides)
        if not args.config and not any(o.startswith("generation.budget=") for o in args.overrides):
            cfg = _sized(cfg)
    return _run(cfg, args.workdir, force=args.force, title="run", start=start, args=args)


def own_data_config(config: str | None, *, task=None, private=None, test=None):
    """The config of `wasp-jax run`: the file's (or the WASP main line's, with the task's own
    decoding lengths), then the --task / --private / --test flags on top."""
    if config:
        cfg = config_lib.load_config(config)
    else:
        main_line = config_lib.base_config()
        cfg = config_lib.replace(
            config_lib.demo_config(),
            **{
                "generation.min_new_tokens": None,
                "generation.max_new_tokens": None,
                "selection.s": main_line.selection.s,
            },
        )
    changes = {}
    if task:
        changes["task"] = task
    if private:
        changes["data.private_path"] = private
    if test is not None:
        changes["eval.test_path"] = test
    return config_lib.replace(cfg, **changes) if changes else cfg


def _sized(cfg):
    """Raises the budget to the smallest whose first vote fills S good and S bad per class."""
    from wasp_jax.pipeline.methods import resolve  # here: the methods import jax

    task = load_task(cfg.task)
    budget = sizing.sized_budget(cfg, task.num_classes, resolve(cfg).first_vote_need(cfg))
    if budget != cfg.generation.budget:
        print(
            f"wasp-jax: generation.budget={budget} (raised from {cfg.generation.budget} so that "
            f"the first vote of {task.num_classes} classes fills voting.q={cfg.voting.q} and "
            f"selection.s={cfg.selection.s} good and bad examples; --set generation.budget=N "
            "to choose)",
            file=sys.stderr,
        )
        cfg = config_lib.replace(cfg, **{"generation.budget": budget})
    return cfg


def main_demo(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    with _usage_errors():
        cfg = config_lib.demo_config()
        if args.eval:
            test_path = str(bundled_path("imdb", "test.jsonl"))
            cfg = config_lib.replace(cfg, **{"eval.test_path": test_path})
        cfg = config_lib.apply_overrides(cfg, args.overrides)
    return _run(cfg, args.workdir, force=args.force, title="demo", start=start, args=args)


def main_report(args: argparse.Namespace) -> int:
    from wasp_jax.outputs import dataset_card, datasheet, report  # matplotlib: only here
    from wasp_jax.pipeline.run.lock import LOCK_FILE, workdir_lock

    # a workdir's lock: refused at once while a run writes it (a copied release folder has none)
    locked = (pathlib.Path(args.workdir) / LOCK_FILE).is_file()
    with workdir_lock(args.workdir) if locked else contextlib.nullcontext():
        sheet = datasheet.write_datasheet(args.workdir)
        dataset_card.write_card(args.workdir)
        path = report.write_report(args.workdir)
    print(f"wrote {sheet}\nwrote {path} (plots in {path.parent / 'plots'})")
    return 0


# ------------------------------------------------------------------------------ helpers


@contextlib.contextmanager
def _usage_errors():
    """Turns config/task validation errors (ValueError subclasses) into exit-code-2 errors."""

    try:
        yield
    except (ConfigError, TaskError) as err:
        raise UsageError(str(err)) from None


@contextlib.contextmanager
def _job_errors(multi: bool):
    """In a multi-process job, a failed peer or a divergence ends this process at once.

    One line on stderr, exit status 1, and no wait at the runtime's shutdown barrier for a
    peer that is gone.
    """
    import jax

    from wasp_jax.distributed import DivergenceError, PeerFailure

    try:
        yield
    except (PeerFailure, DivergenceError, jax.errors.JaxRuntimeError) as err:
        if isinstance(err, jax.errors.JaxRuntimeError):
            if not multi:
                raise
            # a collective the runtime ran for us (not one of ours) met a peer that is gone
            first = (str(err).splitlines() or [type(err).__name__])[0][:200]
            err = (
                f"a collective operation failed because another process of the job stopped "
                f"({first}); rerun the same command to resume from the checkpoint"
            )
        print(f"wasp-jax: error: {err}", file=sys.stderr)
        if not multi:
            raise
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)


@contextlib.contextmanager
def _os_errors(workdir: str):
    """A full disk or an unwritable path met while running becomes one exit-code-2 line."""
    try:
        yield
    except OSError as err:
        raise UsageError(describe_os_error(err, f"the run in {workdir}")) from None


def _run(cfg, workdir: str, *, force: bool, title: str, start: float, args=None) -> int:
    """Checks the inputs, runs (or resumes) and prints the summary; wall time from `start`."""
    check_run_inputs(cfg)
    check_workdir(cfg, workdir, force=force)
    _console_logging()
    # before anything touches a device
    multi = args is not None and join_job(args, before=lambda: _warm_models(cfg))
    from wasp_jax.pipeline.run import runner  # heavy: jax and the models

    with _usage_errors(), _os_errors(workdir), warnings.catch_warnings(), _job_errors(multi):
        warnings.showwarning = _show_warning
        runner.run(cfg, workdir, force=force)
    if multi and not runner.dist.is_writer():
        return 0  # process 0 prints the summary of the job
    wall_s = time.perf_counter() - start
    print(summary(workdir, wall_s, title=title))
    return 0


def _warm_models(cfg) -> None:
    """Converts the run's models into this host's cache before it joins a job."""
    from wasp_jax.cli.warm import warm_cache
    from wasp_jax.pipeline.methods import resolve

    replays = resolve(cfg).replays(cfg)
    models = [] if replays else [("plm", p) for p in cfg.generation.plms]
    models.append(("encoder", cfg.embedder.name))
    if cfg.eval.test_path:
        models.append(("stm", ""))
    try:
        warm_cache(models, cache_dir=cfg.runtime.cache_dir or None)
    except RuntimeError as err:
        raise UsageError(str(err)) from None


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A run's warnings (shortfalls, thin classes) as one console line each."""
    print(f"wasp-jax: warning: {message}", file=sys.stderr)


def _console_logging() -> None:
    """Shows the runner's progress lines (logger "wasp_jax") unless logging is set up."""
    logger = logging.getLogger("wasp_jax")
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False  # a library may configure the root logger later: no doubles


def check_run_inputs(cfg) -> None:
    """Checks everything a run reads, before anything is written or any model is loaded.

    Raises:
      UsageError: unknown task or model, unreadable/malformed private data, replay pools or
        test file (the data errors are `wasp_jax.data.DataError`, a UsageError).
    """
    from wasp_jax.pipeline.methods import resolve  # here: the methods import jax

    with _usage_errors():
        method = resolve(cfg)  # the method checks that the config suits it
        task = load_task(cfg.task)
        method.privacy_plan(cfg)  # a calibration that would understate epsilon is refused
    read = dict(
        label_names=task.labels, label_field=task.label_field, label_offset=task.label_offset
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", data_io.DataWarning)
        if method.reads_private_data:
            if not cfg.data.private_path:
                raise UsageError(
                    f"method {cfg.method!r} needs private data; set data.private_path=FILE.jsonl"
                )
            fields = {"text_field": cfg.data.text_field}
            if cfg.data.label_field:
                fields["label_field"] = cfg.data.label_field
            rows = data_io.read_labeled_jsonl(
                cfg.data.private_path, what="private", **(read | fields)
            )
            class_checks.warn_missing_classes(rows, task.labels)
            del rows  # private: only validated here, the runner reads it again
        need = method.first_vote_need(cfg)
        if need is not None:
            with _usage_errors():
                sizing.check_sizing(cfg, task.num_classes, need)
    for warning in caught:  # one clean console line each (names classes only)
        print(f"wasp-jax: warning: {warning.message}", file=sys.stderr)
        # the runner checks these again when it starts: say each once
        warnings.filterwarnings(
            "ignore", message=re.escape(str(warning.message)), category=data_io.DataWarning
        )
    if method.replays(cfg):
        counts = [0] * task.num_classes
        for pool in cfg.replay.pools:
            rows = data_io.read_labeled_jsonl(pool, what="replay pool", **read)
            for c, n in enumerate(
                class_checks.class_counts((r["label"] for r in rows), len(counts))
            ):
                counts[c] += n
        class_checks.check_candidate_counts(
            counts, cfg.voting.q, label_names=task.labels, what="replay pools (all files)"
        )
    else:
        for spec in cfg.generation.plms:
            check_model(spec, "generation.plms", "plm")
    check_model(cfg.embedder.name, "embedder.name", "embedder")
    if cfg.eval.test_path:
        data_io.read_labeled_jsonl(cfg.eval.test_path, what="test", **read)


def summary(workdir: str, wall_s: float, *, title: str = "run") -> str:
    """A few lines for the console: where the outputs are, (epsilon, sigma), PLM weights."""
    path = release_dir(workdir)
    lines = [
        f"{title} finished in {wall_s:.1f} s; outputs in {path.resolve()} (shareable; "
        f"never share {private_dir(workdir).resolve()})"
    ]
    with contextlib.suppress(OSError, ValueError):
        ledger = json.loads((path / "privacy.json").read_text(encoding="utf-8"))
        lines.append(
            f"  privacy: epsilon={ledger.get('epsilon')} delta={ledger.get('delta')} "
            f"sigma={_num(ledger.get('sigma'))} accounting={ledger.get('accounting')} "
            f"epsilon spent={_num(ledger.get('epsilon_spent'))}"
        )
    with contextlib.suppress(OSError, ValueError):
        for line in (path / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
            m = json.loads(line) if line.strip() else {}
            if m.get("plm_weights") is not None:
                pairs = zip(m.get("plm_names") or [], m["plm_weights"])
                shown = ", ".join(f"{n}={_num(w)}" for n, w in pairs)
                lines.append(f"  round {m.get('round')}: PLM weights {shown}")
    for name in ("synthetic.jsonl", "privacy.json", "datasheet.md", "report.md"):
        if (path / name).exists():
            lines.append(f"  {path / name}")
    return "\n".join(lines)


def _num(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)

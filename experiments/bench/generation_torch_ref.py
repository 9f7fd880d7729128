"""PyTorch reference for the generation benchmark and the golden generation tests.

Runs with a *separate* Python that has torch, transformers and sentence-transformers (never
the project's venv; the project does not depend on torch), for example::

    python3 -m venv /tmp/torchref
    /tmp/torchref/bin/pip install torch==2.13.0 transformers==4.57.6 gguf accelerate \
        sentence-transformers
    /tmp/torchref/bin/python experiments/bench/generation_torch_ref.py [--serve] SPEC.json

SPEC.json (written by ``experiments/bench/generation.py --reference PYTHON``) names the GGUF
files, the MiniLM folder, the prompts, the texts to embed and the settings. The script loads
every model with Hugging Face transformers' own GGUF reader (``from_pretrained(dir,
gguf_file=...)``) and prints one JSON object: greedy token ids and texts (``"golden"``) and
timings (``"bench"``); with ``--serve`` it stays alive and times one request per stdin line,
which is how the benchmark interleaves the two sides. It shares no code with wasp_jax, so
it is an independent reference.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _load(model_dir: str, gguf: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir, gguf_file=gguf)
    model = AutoModelForCausalLM.from_pretrained(model_dir, gguf_file=gguf, torch_dtype="float32")
    model.eval()
    return tok, model


def _greedy(tok, model, ids, max_new):
    import torch

    inp = torch.tensor([ids])
    with torch.inference_mode():
        out = model.generate(
            inp,
            attention_mask=torch.ones_like(inp),
            do_sample=False,
            max_new_tokens=max_new,
            pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else 0,
        )
    return out[0, len(ids) :].tolist()


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def _sample(model, inp, w, pad, max_new):
    import torch

    with torch.inference_mode():
        return model.generate(
            inp,
            attention_mask=torch.ones_like(inp),
            do_sample=True,
            top_p=w["top_p"],
            top_k=0,
            temperature=w["temperature"],
            num_return_sequences=w["num_samples"],
            max_new_tokens=max_new,
            min_new_tokens=max_new if w["ignore_eos"] else 0,
            pad_token_id=pad,
        )


def golden(spec: dict) -> dict:
    """Greedy continuations of the fixed prompts.

    A case gives either ``add_special_tokens`` (the reference tokenizer encodes the prompt)
    or explicit ``prompt_ids`` (for Gemma: transformers 4.57.6 rebuilds its GGUF vocabulary
    as a Unigram model and mis-tokenises, so the ids come from the SentencePiece-BPE
    tokenizer and only the model is the reference).
    """
    result = {}
    for name, m in spec["models"].items():
        tok, model = _load(m["dir"], m["gguf"])
        for case in m["golden"]:
            ids = (
                case.get("prompt_ids")
                or tok(case["prompt"], add_special_tokens=case["add_special_tokens"])["input_ids"]
            )
            new = _greedy(tok, model, ids, case["max_new_tokens"])
            result[f"{name}/{case['id']}"] = dict(
                prompt=case["prompt"],
                add_special_tokens=case.get("add_special_tokens"),
                prompt_ids=ids,
                new_ids=new,
                text=tok.decode(new),
            )
    return result


def bench(spec: dict) -> dict:
    """Timings of transformers' generate and sentence-transformers on the spec's inputs.

    The prompts arrive as token ids (from wasp_jax's tokenizers), so both sides run exactly
    the same inputs.
    """
    import torch

    torch.manual_seed(spec.get("seed", 0))
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "models": {}}
    for name, m in spec["models"].items():
        out["models"][name] = _bench_model(m, spec)
    if spec.get("embed"):
        from sentence_transformers import SentenceTransformer

        e = spec["embed"]
        st = SentenceTransformer(e["dir"], device="cpu")
        st.max_seq_length = e["max_tokens"]
        st.encode(e["texts"][:64], batch_size=e["batch_size"])  # warm-up
        t = time.perf_counter()
        st.encode(e["texts"], batch_size=e["batch_size"], normalize_embeddings=True)
        dt = time.perf_counter() - t
        out["embed"] = dict(seconds=dt, sentences_per_s=len(e["texts"]) / dt)
    return out


def _bench_model(m: dict, spec: dict) -> dict:
    import torch

    t0 = time.perf_counter()
    tok, model = _load(m["dir"], m["gguf"])
    res = {"load_s": time.perf_counter() - t0}
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    ids = m["greedy_ids"]
    _greedy(tok, model, ids, 2)  # warm-up
    res["greedy_s"] = min(
        _timed(lambda: _greedy(tok, model, ids, spec["greedy_new_tokens"]))[0]
        for _ in range(spec["repeats"])
    )
    inp = torch.tensor([m["wasp_ids"]])
    w = spec["wasp"]
    _sample(model, inp, w, pad, 1)  # warm-up
    reps = spec.get("wasp_repeats", 1)
    prefill = min(_timed(lambda: _sample(model, inp, w, pad, 1))[0] for _ in range(reps))
    runs = [_timed(lambda: _sample(model, inp, w, pad, w["max_new_tokens"])) for _ in range(reps)]
    total, seqs = min(runs, key=lambda r: r[0])
    new = seqs[:, inp.shape[1] :]
    n_tokens = int(new.numel()) if w["ignore_eos"] else int((new != pad).sum())
    res["wasp"] = dict(
        prompt_tokens=int(inp.shape[1]),
        total_s=total,
        prefill_s=prefill,
        decode_s=total - prefill,
        samples_per_s=w["num_samples"] / total,
        generated_tokens=n_tokens,
        tokens_per_s=n_tokens / total,
    )
    return res


def serve(spec: dict) -> None:
    """Loads the spec's models, then times one request per stdin line (JSON in, JSON out).

    Requests: ``{"op": "greedy", "model": NAME}``, ``{"op": "wasp", "model": NAME,
    "max_new": N}`` and ``{"op": "embed"}``; each answer is ``{"seconds": ...}``. The
    benchmark sends them interleaved with its own timings, so load from elsewhere on the
    machine hits both sides alike; between requests this process sleeps on stdin.
    """
    import torch

    torch.manual_seed(spec.get("seed", 0))
    models, info = {}, {"torch": torch.__version__, "threads": torch.get_num_threads()}
    for name, m in spec["models"].items():
        t0 = time.perf_counter()
        tok, model = _load(m["dir"], m["gguf"])
        info[f"{name}/load_s"] = time.perf_counter() - t0
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        _greedy(tok, model, m["greedy_ids"], 2)  # warm-up
        _sample(model, torch.tensor([m["wasp_ids"]]), spec["wasp"], pad, 1)
        models[name] = (tok, model, pad, m)
    st = None
    if spec.get("embed"):
        from sentence_transformers import SentenceTransformer

        e = spec["embed"]
        st = SentenceTransformer(e["dir"], device="cpu")
        st.max_seq_length = e["max_tokens"]
        st.encode(e["texts"][:64], batch_size=e["batch_size"])  # warm-up
    print(json.dumps({"ready": True, **info}), flush=True)
    for line in sys.stdin:
        seconds, _ = _timed(functools.partial(_serve_one, json.loads(line), spec, models, st))
        print(json.dumps({"seconds": seconds}), flush=True)


def _serve_one(req: dict, spec: dict, models: dict, st):
    import torch

    if req["op"] == "embed":
        e = spec["embed"]
        return st.encode(e["texts"], batch_size=e["batch_size"], normalize_embeddings=True)
    tok, model, pad, m = models[req["model"]]
    if req["op"] == "greedy":
        return _greedy(tok, model, m["greedy_ids"], spec["greedy_new_tokens"])
    return _sample(model, torch.tensor([m["wasp_ids"]]), spec["wasp"], pad, req["max_new"])


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2) or (len(argv) == 2 and argv[0] != "--serve"):
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[-1]) as f:
        spec = json.load(f)
    if argv[0] == "--serve":
        serve(spec)
        return 0
    result = golden(spec) if spec.get("mode") == "golden" else bench(spec)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

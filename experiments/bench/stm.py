"""STM throughput: MiniLM classifier training and evaluation, JAX vs PyTorch (ONE JSON object).

Usage::

    python -m experiments.bench.stm [--reference /tmp/torchref_e/bin/python] [--steps 12]

The classifier is all-MiniLM-L6-v2 + mean pooling + a linear head with 2 classes (the STM of
``wasp_jax.stm``). Inputs are real IMDb train reviews (``../shared/data``; synthetic sentences
if absent), tokenized once and padded/truncated to 128 tokens, so both sides see identical
token ids. Tokenization is excluded on both sides.

* training: batch 16, length 128, AdamW (lr 5e-5, weight decay 0.01), grad-norm clipping 1.0,
  dropout 0.1 on hidden states (attention-probability dropout off on both sides, as in
  ``wasp_jax.models.bert``); ``--warmup`` untimed steps (JAX compiles there), then
  ``--steps`` timed steps.
* evaluation: batch 64, length 128, dropout off, logits fetched to the host; 1 untimed batch,
  then ``--eval-batches`` timed batches.

``--reference PYTHON`` runs the same measurement with PyTorch (transformers 4.57.6
``BertModel`` loaded from the same safetensors, default thread count) in that interpreter
(a scratch venv outside the repo; torch is not a project dependency) and adds the ratios
JAX / PyTorch (> 1 means JAX is faster).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

import numpy as np

DATA = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data" / "imdb" / "train.jsonl"
LENGTH, TRAIN_BATCH, EVAL_BATCH = 128, 16, 64

TORCH_SCRIPT = r"""
import json, sys, time
import numpy as np, torch
from transformers import BertModel
cfg = json.loads(sys.stdin.read())
torch.manual_seed(0)
ids, mask = torch.tensor(cfg["ids"]), torch.tensor(cfg["mask"])
labels = torch.tensor(cfg["labels"])
bert = BertModel.from_pretrained(
    cfg["model"], add_pooling_layer=False, attention_probs_dropout_prob=0.0
)
head = torch.nn.Linear(bert.config.hidden_size, 2)
drop = torch.nn.Dropout(0.1)
def logits_of(i, m):
    h = bert(input_ids=i, attention_mask=m).last_hidden_state
    mf = m.unsqueeze(-1).float()
    return head(drop((h * mf).sum(1) / mf.sum(1).clamp(min=1e-9)))
params = list(bert.parameters()) + list(head.parameters())
opt = torch.optim.AdamW(params, lr=5e-5, weight_decay=0.01)
bert.train(); drop.train()
tb, eb = cfg["train_batch"], cfg["eval_batch"]
def train_step(s):
    sl = slice((s * tb) % len(ids), (s * tb) % len(ids) + tb)
    loss = torch.nn.functional.cross_entropy(logits_of(ids[sl], mask[sl]), labels[sl])
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step(); opt.zero_grad(set_to_none=True)
    return float(loss)
for s in range(cfg["warmup"]):
    train_step(s)
t = time.perf_counter()
for s in range(cfg["steps"]):
    train_step(cfg["warmup"] + s)
train_s = time.perf_counter() - t
bert.eval(); drop.eval()
with torch.inference_mode():
    logits_of(ids[:eb], mask[:eb]).numpy()
    t = time.perf_counter()
    for b in range(cfg["eval_batches"]):
        sl = slice((b * eb) % len(ids), (b * eb) % len(ids) + eb)
        logits_of(ids[sl], mask[sl]).numpy()
    eval_s = time.perf_counter() - t
print(json.dumps({
    "train_examples_per_s": cfg["steps"] * tb / train_s, "train_seconds": train_s,
    "eval_examples_per_s": cfg["eval_batches"] * eb / eval_s, "eval_seconds": eval_s,
    "torch": torch.__version__, "threads": torch.get_num_threads(),
}))
"""


def load_texts(n: int) -> tuple[list[str], np.ndarray]:
    """n IMDb train reviews (cycled if needed) and labels; synthetic sentences without data."""
    if DATA.is_file():
        rows = [json.loads(line) for line in DATA.read_text().splitlines()[:n]]
        return [r["text"] for r in rows], np.array([r["label"] for r in rows], np.int32)
    words = "the film was good bad long short and the acting plot story great dull".split()
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(words, 160)) for _ in range(n)]
    return texts, rng.integers(0, 2, n).astype(np.int32)


def bench_jax(ids, mask, labels, *, warmup: int, steps: int, eval_batches: int) -> dict:
    import jax

    from wasp_jax import stm

    config = stm.STMConfig(max_length=LENGTH, batch_size=TRAIN_BATCH, eval_batch_size=EVAL_BATCH)
    clf = stm.build_classifier(2, config, rng=np.random.default_rng(0))
    graphdef, params = stm.nnx.split(clf.model)
    tx = stm.make_optimizer(config.weight_decay, config.max_grad_norm)
    opt_state = tx.init(params)
    key = jax.random.key(0)
    weights, valid = np.ones(TRAIN_BATCH, np.float32), np.ones(TRAIN_BATCH, bool)

    def run(step):
        nonlocal params, opt_state
        sl = slice((step * TRAIN_BATCH) % len(ids), (step * TRAIN_BATCH) % len(ids) + TRAIN_BATCH)
        batch = (ids[sl], mask[sl], labels[sl], weights, valid)
        lr = np.float32(config.learning_rate)
        params, opt_state, loss = stm.train_step(
            graphdef, tx, params, opt_state, batch, lr, key, step
        )
        return loss

    start = time.perf_counter()
    for s in range(warmup):
        jax.block_until_ready(run(s))
    first = time.perf_counter() - start
    start = time.perf_counter()
    for s in range(steps):
        loss = run(warmup + s)
    jax.block_until_ready((loss, params))
    train_s = time.perf_counter() - start
    np.asarray(stm.logits_step(graphdef, params, ids[:EVAL_BATCH], mask[:EVAL_BATCH]))
    start = time.perf_counter()
    for b in range(eval_batches):
        sl = slice((b * EVAL_BATCH) % len(ids), (b * EVAL_BATCH) % len(ids) + EVAL_BATCH)
        np.asarray(stm.logits_step(graphdef, params, ids[sl], mask[sl]))
    eval_s = time.perf_counter() - start
    return {
        "train_examples_per_s": steps * TRAIN_BATCH / train_s,
        "train_seconds": train_s,
        "warmup_seconds_incl_compile": first,
        "eval_examples_per_s": eval_batches * EVAL_BATCH / eval_s,
        "eval_seconds": eval_s,
        "jax": jax.__version__,
        "backend": jax.default_backend(),
    }


def bench_torch(python: str, ids, mask, labels, *, warmup, steps, eval_batches) -> dict:
    from wasp_jax.models.bert import minilm_path

    cfg = {
        "model": str(minilm_path()), "ids": ids.tolist(), "mask": mask.tolist(),
        "labels": labels.tolist(), "train_batch": TRAIN_BATCH, "eval_batch": EVAL_BATCH,
        "warmup": warmup, "steps": steps, "eval_batches": eval_batches,
    }  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(
        [python, "-c", TORCH_SCRIPT], input=json.dumps(cfg), capture_output=True, text=True,
        env=env, check=False,
    )  # fmt: skip
    if proc.returncode:
        raise RuntimeError(f"PyTorch reference failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", help="python of a venv with torch + transformers 4.57.6")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--eval-batches", type=int, default=4)
    args = parser.parse_args()
    from wasp_jax.embed import pad_batch, tokenize
    from wasp_jax.models.bert import load_bert

    n = max(EVAL_BATCH * args.eval_batches, TRAIN_BATCH * (args.warmup + args.steps))
    texts, labels = load_texts(n)
    tokenizer = load_bert("all-minilm-l6-v2").tokenizer
    ids, mask = pad_batch(tokenize(tokenizer, texts, LENGTH), LENGTH, len(texts), 0)
    sizes = dict(warmup=args.warmup, steps=args.steps, eval_batches=args.eval_batches)
    result = {
        "benchmark": "stm_minilm_classifier",
        "settings": {"train_batch": TRAIN_BATCH, "eval_batch": EVAL_BATCH, "length": LENGTH,
                     **sizes, "data": "imdb train" if DATA.is_file() else "synthetic"},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "load_avg_1m_at_start": os.getloadavg()[0]},
        "jax": bench_jax(ids, mask, labels, **sizes),
    }  # fmt: skip
    if args.reference:
        result["pytorch"] = bench_torch(args.reference, ids, mask, labels, **sizes)
        for k in ("train_examples_per_s", "eval_examples_per_s"):
            result[f"ratio_{k}"] = result["jax"][k] / result["pytorch"][k]
    result["machine"]["load_avg_1m_at_end"] = os.getloadavg()[0]
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()

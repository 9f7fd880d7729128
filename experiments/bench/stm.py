"""STM throughput: MiniLM classifier training and evaluation, JAX vs PyTorch (ONE JSON object).

Usage::

    python -m experiments.bench.stm [--reference /tmp/torchref_e/bin/python] [--rounds 3]
        [--steps 4] [--eval-batches 2]

The classifier is all-MiniLM-L6-v2 + mean pooling + a linear head with 2 classes (the STM of
``wasp_jax.stm``). Inputs are real IMDb train reviews (``../shared/data``; synthetic sentences
if absent), tokenized once and padded/truncated to 128 tokens, so both sides see identical
token ids. Tokenization is excluded on both sides.

Both sides stay alive and are timed in interleaved rounds (JAX chunk, PyTorch chunk, ...), so
load from other processes on a shared machine hits both alike; the JSON keeps the load average
and the per-round times.

* training: batch 16, length 128, AdamW (lr 5e-5, weight decay 0.01), grad-norm clipping 1.0,
  dropout 0.1 on hidden states (attention-probability dropout off on both sides, as in
  ``wasp_jax.models.bert``); 2 untimed steps (JAX compiles there), then ``--steps`` timed
  steps per round (the loss is fetched to the host after every step on both sides).
* evaluation: batch 64, length 128, dropout off, logits fetched to the host; 1 untimed batch,
  then ``--eval-batches`` timed batches per round.

``--reference PYTHON`` runs the same measurement with PyTorch (transformers 4.57.6
``BertModel`` loaded from the same safetensors, default thread count) in that interpreter
(a scratch venv outside the repo; torch is not a project dependency) and adds the ratios
JAX / PyTorch (> 1 means JAX is faster).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import jax
import numpy as np
from flax import nnx

from experiments.bench import machine
from wasp_jax import stm
from wasp_jax.data import shared_data_dir
from wasp_jax.models.bert import cpu_chunk_tokens, load_bert
from wasp_jax.models.embedder import pad_batch, tokenize
from wasp_jax.models.registry import minilm_path
from wasp_jax.stm.classifier import logits_step
from wasp_jax.stm.finetune import train_step

DATA = shared_data_dir() / "imdb" / "train.jsonl"
LENGTH, TRAIN_BATCH, EVAL_BATCH = 128, 16, 64

TORCH_SCRIPT = r"""
import json, sys, time
import numpy as np, torch
from transformers import BertModel, logging
logging.set_verbosity_error()
cfg = json.loads(sys.stdin.readline())
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
tb, eb = cfg["train_batch"], cfg["eval_batch"]
step = 0
def train(n):
    global step
    bert.train(); drop.train()
    t = time.perf_counter()
    for _ in range(n):
        lo = (step * tb) % (len(ids) - tb + 1)
        loss = torch.nn.functional.cross_entropy(
            logits_of(ids[lo:lo + tb], mask[lo:lo + tb]), labels[lo:lo + tb])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step(); opt.zero_grad(set_to_none=True)
        loss.item(); step += 1
    return time.perf_counter() - t
def evaluate(n):
    bert.eval(); drop.eval()
    t = time.perf_counter()
    with torch.inference_mode():
        for b in range(n):
            lo = (b * eb) % (len(ids) - eb + 1)
            logits_of(ids[lo:lo + eb], mask[lo:lo + eb]).numpy()
    return time.perf_counter() - t
print(json.dumps({"ready": True, "torch": torch.__version__,
                  "threads": torch.get_num_threads()}), flush=True)
for line in sys.stdin:
    what, n = line.split()
    seconds = train(int(n)) if what == "train" else evaluate(int(n))
    print(json.dumps({"seconds": seconds}), flush=True)
"""


class TorchReference:
    """The PyTorch side as a long-lived subprocess, so its timings interleave with JAX's."""

    def __init__(self, python: str, ids, mask, labels):
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        self.proc = subprocess.Popen(
            [python, "-c", TORCH_SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True, env=env,
        )  # fmt: skip
        cfg = {
            "model": str(minilm_path()), "ids": ids.tolist(), "mask": mask.tolist(),
            "labels": labels.tolist(), "train_batch": TRAIN_BATCH, "eval_batch": EVAL_BATCH,
        }  # fmt: skip
        self.info = self._send(json.dumps(cfg))

    def _send(self, line: str) -> dict:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        if not reply:
            raise RuntimeError("the PyTorch reference process died (see its stderr above)")
        return json.loads(reply)

    def train(self, n: int) -> float:
        return self._send(f"train {n}")["seconds"]

    def evaluate(self, n: int) -> float:
        return self._send(f"eval {n}")["seconds"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def load_texts(n: int) -> tuple[list[str], np.ndarray]:
    """The first n IMDb train reviews and labels; synthetic sentences without the data."""
    if DATA.is_file():
        rows = [json.loads(line) for line in DATA.read_text().splitlines()[:n]]
        return [r["text"] for r in rows], np.array([r["label"] for r in rows], np.int32)
    words = "the film was good bad long short and the acting plot story great dull".split()
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(words, 160)) for _ in range(n)]
    return texts, rng.integers(0, 2, n).astype(np.int32)


class JaxSide:
    """The wasp_jax STM: jitted train step (donated state) and jitted logits."""

    def __init__(self, ids, mask, labels, precision="float32"):
        self.ids, self.mask, self.labels = ids, mask, labels
        self.config = stm.STMConfig(max_length=LENGTH, batch_size=TRAIN_BATCH, precision=precision)
        clf = stm.build_classifier(2, self.config, rng=np.random.default_rng(0))
        self.graphdef, self.params = nnx.split(clf.model)
        self.tx = stm.make_optimizer(self.config.weight_decay, self.config.max_grad_norm)
        self.opt_state = self.tx.init(self.params)
        self.key, self.step = jax.random.key(0), 0
        self.chunks = cpu_chunk_tokens()  # what Classifier.predict uses on this host
        self.info = {
            "jax": jax.__version__,
            "backend": jax.default_backend(),
            "precision": precision,
        }

    def train(self, n: int) -> float:
        ones, valid = np.ones(TRAIN_BATCH, np.float32), np.ones(TRAIN_BATCH, bool)
        lr = np.float32(self.config.learning_rate)
        start = time.perf_counter()
        for _ in range(n):
            lo = (self.step * TRAIN_BATCH) % (len(self.ids) - TRAIN_BATCH + 1)
            sl = slice(lo, lo + TRAIN_BATCH)
            batch = (self.ids[sl], self.mask[sl], self.labels[sl], ones, valid)
            self.params, self.opt_state, loss = train_step(
                self.graphdef, self.tx, self.params, self.opt_state, batch, lr, self.key, self.step
            )
            float(loss)  # host sync per step, as a training loop logging its loss would
            self.step += 1
        return time.perf_counter() - start

    def evaluate(self, n: int) -> float:
        start = time.perf_counter()
        for b in range(n):
            lo = (b * EVAL_BATCH) % (len(self.ids) - EVAL_BATCH + 1)
            sl = slice(lo, lo + EVAL_BATCH)
            np.asarray(
                logits_step(self.graphdef, self.params, self.ids[sl], self.mask[sl], self.chunks)
            )
        return time.perf_counter() - start


def _rate(examples: int, seconds: list[float]) -> dict:
    """Examples per second per round: median and spread (``machine.summary``)."""
    return machine.summary([examples / s for s in seconds])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", help="python of a venv with torch + transformers 4.57.6")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved JAX/PyTorch rounds")
    parser.add_argument("--steps", type=int, default=4, help="timed train steps per round")
    parser.add_argument("--eval-batches", type=int, default=2, help="timed eval batches per round")
    parser.add_argument(
        "--precisions", nargs="+", default=["float32", "bfloat16"],
        choices=["float32", "bfloat16"], help="wasp_jax variants (PyTorch runs float32)",
    )  # fmt: skip
    machine.add_guard_flag(parser)
    args = parser.parse_args()
    begin = machine.start(args)
    texts, labels = load_texts(max(4 * EVAL_BATCH, 8 * TRAIN_BATCH))
    tokenizer = load_bert("all-minilm-l6-v2").tokenizer
    ids, mask = pad_batch(tokenize(tokenizer, texts, LENGTH), LENGTH, len(texts), 0)
    sides = {f"jax_{p}": JaxSide(ids, mask, labels, p) for p in dict.fromkeys(args.precisions)}
    if args.reference:
        sides["pytorch"] = TorchReference(args.reference, ids, mask, labels)
    times = {name: {"train": [], "eval": []} for name in sides}
    for side in sides.values():  # untimed warm-up: JAX compiles here
        start = time.perf_counter()
        side.train(2)
        side.evaluate(1)
        side.info["warmup_seconds_incl_compile"] = round(time.perf_counter() - start, 2)
    for _ in range(args.rounds):
        for name, side in sides.items():
            times[name]["train"].append(side.train(args.steps))
            times[name]["eval"].append(side.evaluate(args.eval_batches))
    result = {
        "benchmark": "stm_minilm_classifier",
        "settings": {"train_batch": TRAIN_BATCH, "eval_batch": EVAL_BATCH, "length": LENGTH,
                     "rounds": args.rounds, "train_steps_per_round": args.steps,
                     "eval_batches_per_round": args.eval_batches,
                     "data": "imdb train" if DATA.is_file() else "synthetic"},
        "command": "python -m experiments.bench.stm " + " ".join(sys.argv[1:]),
        "targets": {"train": 1.2, "eval": 1.2},
    }  # fmt: skip
    for name, side in sides.items():
        result[name] = {
            "train": _rate(args.steps * TRAIN_BATCH, times[name]["train"]),
            "eval": _rate(args.eval_batches * EVAL_BATCH, times[name]["eval"]),
            **side.info,
        }
    if "pytorch" in sides:
        sides["pytorch"].close()
        for name in sides:
            if name == "pytorch":
                continue
            for part in ("train", "eval"):
                ratio = result[name][part]["median"] / result["pytorch"][part]["median"]
                result[f"ratio_{part}_{name}_over_pytorch"] = ratio
                result[f"target_met_{part}_{name}"] = ratio >= result["targets"][part]
    result["machine"] = {"platform": platform.platform(), **machine.finish(begin)}
    json.dump(result, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()

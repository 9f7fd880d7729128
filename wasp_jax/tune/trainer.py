"""DPO training of one generator's LoRA adapters on token pairs, resumable step by step.

`train` computes the reference log-probabilities (the generator as it is: the round's
starting weights), then runs ``tune.steps`` AdamW steps (linear warm-up, global-norm
clipping) on batches of ``tune.batch_pairs`` pairs. Which pairs a step reads depends only on
the step number and the seed, and every ``tune.save_every`` steps the adapters, the optimiser
state and the loss curve so far are saved (orbax) under ``ckpt_dir``, so a run killed during
training resumes from its last save to the same bytes as one never stopped.

Batches are split over the generator mesh's ``data`` axis when it divides them; the frozen
weights keep the generator's own shardings, and the adapters are replicated.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import pathlib
import shutil
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from wasp_jax import data as data_io
from wasp_jax.config.tune import TuneConfig
from wasp_jax.models import cache as model_cache
from wasp_jax.models import lora
from wasp_jax.models import sharding as shd
from wasp_jax.tune import dpo
from wasp_jax.tune import weights as tw

log = logging.getLogger("wasp_jax")


@dataclasses.dataclass(frozen=True)
class Trained:
    """What `train` returns.

    Attributes:
      adapters: name -> {"a", "b"} host arrays (stacked over layers).
      loss, reward_accuracy: float32 [steps], per step.
      seconds: wall time of this call (reference, compiles and steps).
      resumed_from: the step training resumed at (0 = from the start).
    """

    adapters: dict
    loss: np.ndarray
    reward_accuracy: np.ndarray
    seconds: float
    resumed_from: int


def optimizer(tc: TuneConfig) -> optax.GradientTransformation:
    """AdamW (no weight decay) after global-norm clipping, with a linear warm-up."""
    warm = max(tc.warmup_steps, 1)
    schedule = optax.linear_schedule(tc.learning_rate / warm, tc.learning_rate, warm - 1)
    return optax.chain(
        optax.clip_by_global_norm(tc.max_grad_norm),
        optax.adamw(schedule, weight_decay=0.0),
    )


def batch_indices(num_pairs: int, batch: int, step: int, seed: int) -> np.ndarray:
    """The pairs step `step` reads: consecutive slices of per-epoch permutations (a pure
    function of its arguments, so a resumed run reads what an unstopped one would)."""
    pos = step * batch + np.arange(batch)
    epoch, within = pos // num_pairs, pos % num_pairs
    perms = {e: np.random.default_rng([seed, int(e)]).permutation(num_pairs) for e in set(epoch)}
    return np.asarray([perms[e][w] for e, w in zip(epoch, within, strict=True)], np.int64)


def reference_logprobs(gen, stacked, rows: dpo.TokenRows, chunk: int) -> np.ndarray:
    """[N] log-probabilities of every row's completion under the generator as it is."""
    ref_fn = dpo.make_reference(gen.graphdef)
    out = []
    n = len(rows.tokens)
    for start in range(0, n, chunk):
        sl = np.arange(start, start + chunk) % n  # a short last chunk repeats rows (same shape)
        arrays = [rows.tokens[sl], rows.mask[sl], rows.select[sl], rows.keep[sl]]
        placed = [jax.device_put(a, shd.batch_sharding(gen.mesh, a.shape)) for a in arrays]
        got = np.asarray(ref_fn(gen.state, stacked, *placed))
        out.append(got[: min(chunk, n - start)])
    return np.concatenate(out) if out else np.zeros(0, np.float32)


ADAPTERS = "adapters.npz"


def _save_adapters(path: pathlib.Path, adapters) -> None:
    buf = io.BytesIO()
    flat = {f"{n}.{part}": np.asarray(ad[part]) for n, ad in adapters.items() for part in ad}
    np.savez(buf, **flat)
    data_io.atomic_write_bytes(path / ADAPTERS, buf.getvalue())


def saved_adapters(path: pathlib.Path) -> dict | None:
    """The finished adapters saved under `path` (name -> {"a", "b"}), or None."""
    file = pathlib.Path(path) / ADAPTERS
    if not file.is_file():
        return None
    out: dict = {}
    with np.load(file, allow_pickle=False) as z:
        for key in z.files:
            name, part = key.rsplit(".", 1)
            out.setdefault(name, {})[part] = np.asarray(z[key])
    return out


def _save(path: pathlib.Path, step: int, adapters, opt_state, loss, acc) -> None:
    leaves = jax.tree.leaves(opt_state)
    tree = {
        "adapters": adapters,
        "opt": {str(i): leaf for i, leaf in enumerate(leaves)},
        "loss": np.asarray(loss, np.float32),
        "acc": np.asarray(acc, np.float32),
    }
    model_cache.save_state(path / f"step_{step:06d}", tree, meta={"step": step})
    for old in path.glob("step_*"):  # keep the newest complete save only
        if old.name != f"step_{step:06d}" and not old.name.endswith(".tmp"):
            shutil.rmtree(old, ignore_errors=True)


def _restore(path: pathlib.Path, adapters, opt_state):
    """(step, adapters, opt_state, loss, acc) of the newest complete save, or None."""
    saves = sorted(p for p in path.glob("step_*") if model_cache.is_cached(p))
    if not saves:
        return None
    step = int(model_cache.read_meta(saves[-1])["step"])
    leaves, treedef = jax.tree.flatten(opt_state)
    abstract = {
        "adapters": adapters,
        "opt": {str(i): leaf for i, leaf in enumerate(leaves)},
        "loss": np.zeros(step, np.float32),
        "acc": np.zeros(step, np.float32),
    }
    got = model_cache.restore_state(saves[-1], abstract)
    opt = jax.tree.unflatten(treedef, [got["opt"][str(i)] for i in range(len(leaves))])
    return step, got["adapters"], opt, list(np.asarray(got["loss"])), list(np.asarray(got["acc"]))


def train(
    gen,
    rows: dpo.TokenRows,
    tc: TuneConfig,
    *,
    seed: int,
    ckpt_dir: pathlib.Path | None = None,
    progress=None,
) -> Trained:
    """Trains adapters on `rows`: the first half chosen rows, the second half their
    rejected partners (row i pairs with row P + i). Long because it is the training loop:
    reference, initialisation or resume, steps with periodic saves."""
    t0 = time.perf_counter()
    if (why := tw.not_tunable(gen)) is not None:
        raise ValueError(f"cannot tune: {why}")
    num_pairs = len(rows.tokens) // 2
    if num_pairs < 1 or len(rows.tokens) != 2 * num_pairs:
        raise ValueError("training needs at least one (chosen, rejected) pair of rows")
    stacked = tw.stacked(gen)
    bp = tc.batch_pairs
    adapters = lora.init_adapters(stacked, tc.targets, tc.rank, jax.random.key(seed))
    opt = optimizer(tc)
    opt_state = opt.init(adapters)
    start, losses, accs = 0, [], []
    if ckpt_dir is not None and (got := _restore(ckpt_dir, adapters, opt_state)):
        start, adapters, opt_state, losses, accs = got
        log.info("tuning %s: resumed at step %d of %d", gen.name, start, tc.steps)
    # the reference: the generator as it is (needed only while steps remain)
    ref = reference_logprobs(gen, stacked, rows, 2 * bp) if start < tc.steps else None
    rep = shd.replicated(gen.mesh)
    adapters, opt_state = jax.device_put((adapters, opt_state), rep)
    step_fn = dpo.make_train_step(gen.graphdef, opt, scale=tc.alpha / tc.rank, beta=tc.beta)
    for step in range(start, tc.steps):
        idx = batch_indices(num_pairs, bp, step, seed)
        take = np.concatenate([idx, idx + num_pairs])
        batch = {
            "tokens": rows.tokens[take],
            "mask": rows.mask[take],
            "select": rows.select[take],
            "keep": rows.keep[take],
            "ref": ref[take].astype(np.float32),
        }
        batch = {
            k: jax.device_put(v, shd.batch_sharding(gen.mesh, v.shape)) for k, v in batch.items()
        }
        adapters, opt_state, loss, metrics = step_fn(adapters, opt_state, gen.state, stacked, batch)
        losses.append(float(loss))
        accs.append(float(metrics["reward_accuracy"]))
        if progress is not None:
            progress(step + 1, tc.steps, losses[-1])
        done = step + 1
        if ckpt_dir is not None and (done % tc.save_every == 0 or done == tc.steps):
            _save(ckpt_dir, done, adapters, opt_state, losses, accs)
    host = jax.tree.map(lambda x: np.asarray(jnp.asarray(x)), adapters)
    if ckpt_dir is not None:
        _save_adapters(ckpt_dir, host)
    return Trained(
        adapters=host,
        loss=np.asarray(losses, np.float32),
        reward_accuracy=np.asarray(accs, np.float32),
        seconds=time.perf_counter() - t0,
        resumed_from=start,
    )

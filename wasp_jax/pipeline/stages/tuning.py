"""Tuning a local PLM on DP feedback before a voted round (``tune.enabled``).

Before round t (t >= 1) generates with PLM k, the previous round's candidates of PLM k are
paired inside each class: the candidate of higher margin to the noisy class prototypes is
preferred (`wasp_jax.tune.pairs`). LoRA adapters trained with DPO on those pairs
(`wasp_jax.tune.trainer`; the reference is PLM k as round t starts) are merged into its
weights, so round t and every later round sample from the tuned model. Each round's
adapters are checkpointed; a resumed run merges the saved ones again, in round order.

Privacy by construction: `training_rows` receives the public population (synthetic texts,
labels, PLM and round of every row) and the post-noise margins, nothing else; the pairs and
the token rows are functions of those alone, so tuning spends no privacy. The training
prompt is the class's zero-shot prompt (public: the task's own template).
"""

from __future__ import annotations

import logging

import numpy as np

from wasp_jax.pipeline.stages import prompts
from wasp_jax.tune import dpo, trainer
from wasp_jax.tune import pairs as tp
from wasp_jax.tune import weights as tw

log = logging.getLogger("wasp_jax")

TUNE_DIR = "tune"


def training_rows(gen, task, pop, margin, *, k: int, source_round: int, tc):
    """(token rows: chosen then rejected, the pairs) from PLM k's candidates of
    `source_round` and their post-noise margins; None when no pair clears ``tune.min_gap``."""
    rows = np.flatnonzero((np.asarray(pop.plm) == k) & (np.asarray(pop.rounds) == source_round))
    labels = np.asarray(pop.labels, np.int64)[rows]
    found = tp.preference_pairs(
        np.asarray(margin, np.float64)[rows],
        labels,
        np.zeros(len(rows), np.int64),  # one prompt per class for a PLM and round
        min_gap=tc.min_gap,
        max_per_class=tc.max_pairs_per_class,
    )
    if len(found) == 0:
        return None, found
    prompt_ids = [
        gen.encode_prompt(prompts.zero_shot_prompt(task, c)) for c in range(task.num_classes)
    ]

    def completion(i):
        ids = list(gen.tokenizer.encode(pop.texts[rows[i]], add_bos=False))
        return ids[: tc.max_completion_tokens] or [0]

    order = [*found.chosen, *found.rejected]
    lab = [*found.label, *found.label]
    packed = dpo.token_rows([prompt_ids[c] for c in lab], [completion(i) for i in order])
    return packed, found


def _dir(inputs, t: int, k: int):
    return inputs.ckpt.dir / TUNE_DIR / f"r{t}_k{k}"


def _catch_up(inputs, gen, t: int, k: int) -> None:
    """Merges the saved adapters of rounds before t that this process has not merged (a
    resumed run), in round order."""
    tc = inputs.cfg.tune
    tw.remember_base(gen)
    merged = getattr(gen, "tuned_rounds", set())
    for r in range(1, t):
        if r in merged:
            continue
        saved = trainer.saved_adapters(_dir(inputs, r, k))
        if saved is not None:
            tw.merge_into(gen, saved, tc.alpha / tc.rank)
        merged.add(r)
    gen.tuned_rounds = merged


def before_round(inputs, state, t: int, k: int, margin: np.ndarray) -> dict | None:
    """Tunes PLM k on round t - 1's pairs and merges the adapters; returns the record for
    ``metrics.jsonl`` (None when PLM k cannot be tuned or there is nothing to learn from)."""
    tc = inputs.cfg.tune
    gen = inputs.models.generator(k)
    if (why := tw.not_tunable(gen)) is not None:
        log.info("round %d: %s is not tuned: %s", t, inputs.plm_names[k], why)
        return None
    _catch_up(inputs, gen, t, k)
    if t in gen.tuned_rounds:
        return None
    pop = state.population
    packed, found = training_rows(gen, inputs.task, pop, margin, k=k, source_round=t - 1, tc=tc)
    record = {
        "source_round": t - 1,
        "pairs": len(found),
        "pairs_per_class": found.per_class(inputs.task.num_classes),
        "mean_gap": float(found.gap.mean()) if len(found) else 0.0,
    }
    if packed is None:
        log.warning(
            "round %d: no preference pair of %s clears tune.min_gap=%g; not tuned",
            t,
            inputs.plm_names[k],
            tc.min_gap,
        )
        gen.tuned_rounds.add(t)
        return record | {"steps": 0}
    log.info("round %d: tuning %s on %d pairs", t, inputs.plm_names[k], len(found))
    out = trainer.train(
        gen,
        packed,
        tc,
        seed=inputs.cfg.seed * 1_000 + t * 10 + k,
        ckpt_dir=_dir(inputs, t, k) if inputs.writer else None,
        progress=_progress(inputs, t, k),
    )
    tw.merge_into(gen, out.adapters, tc.alpha / tc.rank)
    gen.tuned_rounds.add(t)
    return record | {
        "steps": len(out.loss),
        "loss": [round(float(x), 5) for x in out.loss],
        "reward_accuracy_last": float(out.reward_accuracy[-1]),
        "seconds": round(out.seconds, 3),
        "peak_rss_mb": _peak_rss_mb(),
        "update_norm": float(
            sum(np.linalg.norm(a["a"] @ a["b"]) for a in out.adapters.values()) * tc.alpha / tc.rank
        ),
    }


def _progress(inputs, t: int, k: int):
    if not inputs.cfg.runtime.progress:
        return None
    name = inputs.plm_names[k]

    def report(step: int, steps: int, loss: float) -> None:
        if step == steps or step % 10 == 0:
            log.info("round %d: tuning %s, step %d/%d, DPO loss %.4f", t, name, step, steps, loss)

    return report


def untuned_draw(inputs, k: int, draw):
    """``draw()`` with PLM k's untuned weights (the zero-shot baseline must not see the
    tuning); a plain call for a PLM that was never tuned."""
    gen = inputs.models.generator(k)
    if tw.not_tunable(gen) is not None:
        return draw()
    with tw.untuned(gen):
        return draw()


def _peak_rss_mb() -> float:
    """This process's peak resident memory so far, MiB (Linux reports KiB)."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)

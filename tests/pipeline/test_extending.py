"""The recipes of docs/extending.md, followed step by step: a new method defined here runs
through the runner, and a new release kind defined here is calibrated, computed and noised
by the library's own plan and vote place. No library file knows either of them."""

from __future__ import annotations

import json
import math

import chex
import jax.numpy as jnp
import numpy as np
import pytest
from pipeline_fakes import loaders
from wasp_jax.kernels.voting import vote_weights

from tests.private_files import first_private
from wasp_jax import config as C
from wasp_jax.budget import split_evenly
from wasp_jax.pipeline import methods
from wasp_jax.pipeline.methods import common
from wasp_jax.pipeline.methods.base import Method
from wasp_jax.pipeline.run import runner
from wasp_jax.pipeline.run.results import Decided
from wasp_jax.pipeline.run.state import RoundDecision
from wasp_jax.pipeline.stages.prompts import round_prompts
from wasp_jax.pipeline.stages.vote_plus import aggregate_and_noise
from wasp_jax.privacy.noise_source import NoiseSource
from wasp_jax.privacy.plan import ReleaseRequest, plan_releases
from wasp_jax.privacy.release_kinds import (
    KINDS,
    ReleaseKind,
    kind_sensitivity,
    register_kind,
    to_units,
    unregister_kind,
)

# -- recipe 1: a method ----------------------------------------------------------------------


class FirstCome(Method):
    """A toy method: every round, the first S candidates of each class are the examples.

    It reads no private data and releases nothing; its rounds still go through the runner's
    stages, checkpoint, ledger and outputs."""

    name = "toy_first_come"
    summary = "Toy: the first S candidates of each class prompt the next round."
    sections = ("generation", "selection")

    def initial(self, inputs, state, k, budget):
        return common.zero_shot(inputs, state, k, budget)

    def decide(self, inputs, state, t):
        labels, S = state.population.labels, inputs.cfg.selection.s
        classes = range(inputs.task.num_classes)
        good = [[i for i, y in enumerate(labels) if y == c][:S] for c in classes]
        K = len(inputs.plm_names)
        budgets = split_evenly(inputs.cfg.generation.round_increment(t - 1), K)
        decision = RoundDecision(good, [[] for _ in classes], [1.0 / K] * K, budgets)
        return Decided(t, decision)

    def draw(self, inputs, state, t, k):
        d, cfg = state.decisions[t], inputs.cfg
        prompts = round_prompts(
            inputs.task,
            state.population.texts,
            d.good,
            d.bad,
            seed=cfg.seed,
            round_=t,
            s=cfg.selection.s,
            contrastive=False,
            num_variants=1,
        )
        quotas = common.quotas_of(inputs, d.budgets[k], t + k)
        return common.generated(inputs, state, k, lambda gen, c, key: prompts[c], quotas, t)


@pytest.fixture
def first_come():
    method = methods.register_method(FirstCome())
    yield method
    methods.unregister_method(method.name)


def _toy_config():
    return C.replace(
        C.base_config(),
        **{
            "method": "toy_first_come",
            "data.private_path": first_private(8),
            "generation.plms": ("fake-a", "fake-b"),
            "generation.budget": 24,
            "generation.rounds": 2,
            "generation.batch_size": 8,
            "selection.s": 2,
            "runtime.progress": False,
        },
    )


def test_a_method_defined_in_a_test_runs_through_the_runner(first_come, tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "_finish", lambda *a: None)
    g, e = loaders()
    stages = []
    hooks = runner.Hooks(load_generator=g, load_embedder=e, on_stage=stages.append)
    res = runner.run(_toy_config(), tmp_path, hooks=hooks)
    rows = [json.loads(x) for x in (res.synthetic_path).read_text().splitlines()]
    assert res.n_synthetic == len(rows) and 18 <= len(rows) <= 24  # fakes drop a few
    assert sorted({r["round"] for r in rows}) == [0, 1, 2]
    assert "r2/gen/1:done" in stages and "r2/close:start" in stages
    ledger = json.loads((res.release / "privacy.json").read_text())
    assert ledger["method"] == "toy_first_come" and ledger["private_data_used"] is False
    assert res.epsilon_spent == 0.0 and res.sigma is None
    described = json.loads((res.release / "method.json").read_text())
    assert described["summary"] == FirstCome.summary and described["releases"] == []
    # round 1's prompts were built from the first S candidates of each class
    metrics = [json.loads(x) for x in (res.release / "metrics.jsonl").read_text().splitlines()]
    good = metrics[1]["selected"]["good"]
    for c, picked in enumerate(good):
        first = [i for i, r in enumerate(rows) if r["label"] == c and r["round"] == 0][:2]
        assert picked == first
    # a resume finds every stage done
    again = runner.run(_toy_config(), tmp_path, hooks=hooks)
    assert again.resumed_stages == len(json.loads(_state(tmp_path))["done"])


def _state(workdir) -> str:
    return next(workdir.glob("private/checkpoint/state.json")).read_text()


def test_an_unregistered_method_is_refused_with_the_closest_name():
    cfg = C.replace(C.base_config(), method="wsp")
    with pytest.raises(C.ConfigError, match=r"method: must be one of .*did you mean 'wasp'"):
        methods.resolve(cfg)


# -- recipe 2: a release kind ----------------------------------------------------------------


def _total_votes(s, step):
    """Per histogram, all votes cast over the voting candidates (one number each)."""
    return jnp.stack([jnp.sum(jnp.where(s.syn_mask, to_units(h, step), 0)) for h in s.votes])


TOTAL_VOTES = ReleaseKind(
    name="toy_total_votes",
    measures="Top-Q votes summed over every candidate (one total per histogram)",
    counts_votes=True,
    needs=(),
    shape=lambda d: (d.num_histograms,),
    # a record adds sum(w) to each histogram's total; histograms add in quadrature
    sensitivity=lambda d: float(np.sum(vote_weights(d.q))) * math.sqrt(d.num_histograms),
    natural_step=lambda q: 2.0 ** -(int(q) - 1),
    statistic=_total_votes,
)


@pytest.fixture
def total_votes():
    register_kind(TOTAL_VOTES)
    yield TOTAL_VOTES
    unregister_kind(TOTAL_VOTES.name)


def _unit_rows(rng, n, d):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_a_release_kind_defined_in_a_test_is_planned_computed_and_noised(total_votes):
    rng = np.random.default_rng(0)
    e_priv, y_priv = _unit_rows(rng, 9, 6), rng.integers(0, 2, 9).astype(np.int32)
    e_syn, y_syn = _unit_rows(rng, 20, 6), (np.arange(20) % 2).astype(np.int32)
    q, both = 3, ("nearest", "farthest")
    sens = kind_sensitivity("toy_total_votes", q=q, num_histograms=2)
    assert sens == pytest.approx((1 + 0.5 + 0.25) * math.sqrt(2))

    def release(rows, sigma):
        return aggregate_and_noise(
            NoiseSource.seeded(0),
            e_priv[rows],
            y_priv[rows],
            e_syn,
            y_syn,
            q=q,
            sigmas={"toy_total_votes": sigma},
            release=both,
        )

    # brute force over the add/remove neighbours: no removal moves the totals further
    full = np.asarray(release(np.arange(9), 0.0).toy_total_votes, np.float64)
    chex.assert_shape(full, (2,))
    np.testing.assert_allclose(full, [9 * 1.75, 9 * 1.75])  # every record casts all q votes
    for drop in range(9):
        rows = np.delete(np.arange(9), drop)
        moved = np.linalg.norm(full - np.asarray(release(rows, 0.0).toy_total_votes))
        assert moved <= sens + 1e-6
    # noised by the library's lattice sampler: values on the lattice, not the clean totals
    noisy = release(np.arange(9), 2.0)
    step = noisy.steps["toy_total_votes"]
    units = np.asarray(noisy.toy_total_votes, np.float64) / step
    np.testing.assert_array_equal(units, np.round(units))
    assert not np.allclose(noisy.toy_total_votes, full)
    assert noisy.ledger[0][:3] == ("toy_total_votes", 2.0, sens)

    # the plan splits one budget between it and a built-in kind, each by its sensitivity
    cfg = C.replace(C.base_config(), **{"privacy.epsilon": 4.0})
    request = ReleaseRequest(
        kinds=("per_sample", "toy_total_votes"),
        rounds=2,
        q=q,
        histograms=both,
        shares={"per_sample": 0.5, "toy_total_votes": 0.5},
    )
    plan = plan_releases(cfg, request)
    (_, s1, e1), (kind, s2, e2) = plan.kinds
    assert kind == "toy_total_votes" and e2 == pytest.approx(sens)
    assert s1 / e1 == pytest.approx(s2 / e2)  # equal shares: equal noise multipliers
    assert "toy_total_votes" in KINDS


def test_an_unregistered_kind_is_refused():
    cfg = C.base_config()
    request = ReleaseRequest(kinds=("no_such_kind",), rounds=1, q=1, histograms=("nearest",))
    with pytest.raises(C.ConfigError, match="not registered"):
        plan_releases(cfg, request)

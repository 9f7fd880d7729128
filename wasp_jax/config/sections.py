"""Typed, validated run configuration for the WASP pipeline.

A run is described by one frozen `WaspConfig` made of small frozen sections. Every field is
checked in `__post_init__`; a bad value raises `ConfigError` (a `ValueError`) that names the
field and the allowed range. Config files are Python files (`experiments/configs/*.py`) that
expose `get_config() -> WaspConfig`, usually as a diff from `base_config()` built with the
dotted helper `replace(cfg, **{"voting.q": 1})`. `apply_overrides(cfg, ["voting.q=1"])`
applies command-line `--set` strings with a type check against the field's declared type; an
unknown key is an error naming the closest valid key.

`WaspConfig.method` names a method plug-in of `wasp_jax.pipeline.methods` (wasp, aug_pe,
zerogen, multi_zeroshot, random_control, replay, wasp_plus); the method checks that the
sections suit it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from wasp_jax.errors import ConfigError

ADJACENCIES = ("add_remove", "replace_one")
#: The accountants a run may choose (`wasp_jax.privacy.accounting.Accountant` values).
ACCOUNTANTS = ("rdp", "classic")
NOISE_SOURCES = ("secure", "seeded")
RELEASES = ("nearest", "farthest")
PLM_SCORES = ("robust", "compat")
MESH_CHOICES = ("none", "auto")
EVAL_MODES = ("probe", "finetune")


def _check(cond: bool, field: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{field}: {msg}")


#: Upper bounds checked before any work: a value beyond them would exhaust the machine long
#: before a first result (memory grows with the budget and the token limits; 1,000,000
#: candidates is already the voting benchmark's largest case).
GENERATION_LIMITS = {
    "budget": 1_000_000,
    "rounds": 100,
    "batch_size": 1024,
    "max_new_tokens": 4096,
    "min_new_tokens": 4096,
    "num_prompt_variants": 1000,
    "max_attempts": 100,
}


def _check_limits(section: Any, prefix: str, limits: dict[str, int]) -> None:
    for name, limit in limits.items():
        v = getattr(section, name)
        if v is None:
            continue
        _check(
            isinstance(v, int) and not isinstance(v, bool),
            f"{prefix}.{name}",
            f"must be an integer, got {v!r}",
        )
        _check(
            v <= limit,
            f"{prefix}.{name}",
            f"{v} is above the limit of {limit:,}; a run that large would exhaust memory and "
            "time before producing anything (split it into several runs)",
        )


def _check_choice(value: Any, field: str, choices: Sequence[str]) -> None:
    _check(value in choices, field, f"got {value!r}; allowed: {', '.join(map(repr, choices))}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class DataConfig:
    """Private data: where it is and how it is split over parties.

    The run uses every record of `private_path` and states its guarantee for them; for a
    prefix or a subsample, write a new file (`wasp-jax prepare-private`, docs/method.md §5.2).

    Attributes:
        private_path: the private samples (JSONL, CSV/TSV, Parquet or a saved dataset
            folder); required by the methods that use private data, ignored by the others.
        text_field, label_field: the columns of the private and test files holding the text
            and the label ("" = the task's label_field).
        num_parties: number of data parties L (§2.5); each adds noise sigma/sqrt(L) and the
            server sums, which assumes secure aggregation.
        party_alpha: Dirichlet concentration of the per-class split over parties (0 = even).
    """

    private_path: str = ""
    text_field: str = "text"
    label_field: str = ""
    num_parties: int = 1
    party_alpha: float = 0.0

    def __post_init__(self):
        _check(self.num_parties >= 1, "data.num_parties", f"must be >= 1, got {self.num_parties}")
        _check(self.party_alpha >= 0, "data.party_alpha", "must be >= 0 (0 = even split)")


@dataclasses.dataclass(frozen=True, kw_only=True)
class PrivacyConfig:
    """The (epsilon, delta) target over all rounds and how it is accounted.

    Attributes:
        epsilon: total epsilon over the T voting rounds, > 0 (`math.inf` = no noise).
        delta: total delta, in (0, 1).
        adjacency: "add_remove" or "replace_one" (folded into the L2 sensitivity).
        accounting: "rdp" (dp_accounting's Renyi accountant, which covers the discrete
            Gaussian releases: docs/method.md §2.5) or "classic" (sigma from the original
            formula with the original's Delta, reproducing sigma = 9.6896; the ledger still
            states the epsilon of the derived sensitivity, and a config whose epsilon by the
            derived sensitivity exceeds the target is refused).
        noise: "secure" (noise from a secret the run draws from the OS's CSPRNG: DP) or
            "seeded" (noise reproducible from the seed, for tests and replication only: NOT
            differentially private, and marked so in every output).
        sensitivity_override: if set, calibrate sigma for this sensitivity instead of the
            derived one (compat: reproduce an ablation's Delta). It must be at least the
            derived L2 sensitivity of the release (checked by `WaspConfig`); the ledger
            always accounts with the derived one.
    """

    epsilon: float = 4.0
    delta: float = 1e-5
    adjacency: str = "add_remove"
    accounting: str = "rdp"
    noise: str = "secure"
    sensitivity_override: float | None = None

    def __post_init__(self):
        _check(
            self.epsilon > 0, "privacy.epsilon", f"must be > 0 (inf = no noise), got {self.epsilon}"
        )
        _check(0 < self.delta < 1, "privacy.delta", f"must be in (0, 1), got {self.delta}")
        _check_choice(self.adjacency, "privacy.adjacency", ADJACENCIES)
        _check(
            self.accounting != "pld",
            "privacy.accounting",
            "'pld' accounts continuous Gaussian noise, but every release adds discrete "
            "Gaussian noise, which the Renyi accountant covers: use 'rdp'",
        )
        _check_choice(self.accounting, "privacy.accounting", ACCOUNTANTS)
        _check_choice(self.noise, "privacy.noise", NOISE_SOURCES)
        if self.sensitivity_override is not None:
            _check(self.sensitivity_override > 0, "privacy.sensitivity_override", "must be > 0")


@dataclasses.dataclass(frozen=True, kw_only=True)
class VotingConfig:
    """Top-Q voting (docs/method.md §2.4).

    Attributes:
        q: votes per private sample, weights 1, 1/2, ..., 2^-(q-1); q >= 1.
        release: which noisy histograms are released: a non-empty subset of
            ("nearest", "farthest"); the sensitivity counts each released histogram.
        block_size: stream the synthetic axis in blocks of this size (0 = one block).
        valid_fraction: per-round random hold-out of each PLM's data that neither gets votes
            nor appears in prompts (§2.2; the original uses 0.1); 0 = off.
    """

    q: int = 8
    release: tuple[str, ...] = ("nearest", "farthest")
    block_size: int = 0
    valid_fraction: float = 0.0

    def __post_init__(self):
        _check(self.q >= 1, "voting.q", f"must be >= 1, got {self.q}")
        _check(len(self.release) >= 1, "voting.release", "must name at least one histogram")
        for r in self.release:
            _check_choice(r, "voting.release", RELEASES)
        _check(len(set(self.release)) == len(self.release), "voting.release", "duplicate entry")
        _check(self.block_size >= 0, "voting.block_size", "must be >= 0 (0 = unblocked)")
        _check(0 <= self.valid_fraction < 1, "voting.valid_fraction", "must be in [0, 1)")


@dataclasses.dataclass(frozen=True, kw_only=True)
class SelectionConfig:
    """Per-class good/bad selection (docs/method.md §2.6).

    Attributes:
        s: good (and bad) samples selected per class, >= 1; each contrastive prompt shows
            s // 2 bad and s - s // 2 good examples.
        compat_sign_flip: reproduce the original normalise-then-rank ranking (which reverses
            when a noisy class sum is negative).
    """

    s: int = 8
    compat_sign_flip: bool = False

    def __post_init__(self):
        _check(self.s >= 1, "selection.s", f"must be >= 1, got {self.s}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class GenerationConfig:
    """PLMs, budget and decoding (docs/method.md §2.0, §2.7-§2.10).

    Attributes:
        plms: PLM specs for `wasp_jax.plm.load_generator` (registry names or paths); for
            `replay` these are ignored (the pools name the PLMs).
        budget: N, the final number of synthetic samples over all PLMs.
        rounds: T, the number of voting rounds (0 for the zero-shot methods).
        initial: N_0, the zero-shot start; None = N / (T + 1) (the original's assumption,
            §2.10). Each later round adds (N - N_0) / T (remainder to early rounds).
        batch_size: continuations per generate call (one prompt, `batch_size` samples).
        top_p, top_k, temperature: decoding (§2.9: 0.9, 0 = off, 1.0).
        min_new_tokens, max_new_tokens: None = the task's defaults.
        num_prompt_variants: contrastive prompt variants per class and round (6).
        plm_weighting: allocate the next budget by softmax(PLM score / tau); off = uniform.
        tau: softmax temperature, > 0.
        plm_score: "robust" (mean positive noisy nearest vote per sample, normalised) or
            "compat" (the original share-of-normalised-mass formula).
        contrastive: bad+good prompts (needs the farthest histogram); off = good only.
        chat: wrap prompts in the PLM's chat template (None = the model's default).
        max_attempts: generation passes per quota before a shortfall is recorded.
        api_cache_dir: response cache of API PLMs (`wasp_jax.models.api`); "" = the
            workdir's ``private/api_cache``. A shared folder lets other runs reuse the answers.
    """

    plms: tuple[str, ...] = ("smollm2-135m-instruct", "gemma3-270m")
    budget: int = 96
    rounds: int = 2
    initial: int | None = None
    batch_size: int = 16
    top_p: float = 0.9
    top_k: int = 0
    temperature: float = 1.0
    min_new_tokens: int | None = None
    max_new_tokens: int | None = None
    num_prompt_variants: int = 6
    plm_weighting: bool = True
    tau: float = 1.0
    plm_score: str = "robust"
    contrastive: bool = True
    chat: bool | None = None
    max_attempts: int = 4
    api_cache_dir: str = ""

    def __post_init__(self):
        _check_limits(self, "generation", GENERATION_LIMITS)
        _check(len(self.plms) >= 1, "generation.plms", "must name at least one PLM")
        _check(all(isinstance(p, str) and p for p in self.plms), "generation.plms", "empty spec")
        _check(self.budget >= 1, "generation.budget", f"must be >= 1, got {self.budget}")
        _check(self.rounds >= 0, "generation.rounds", f"must be >= 0, got {self.rounds}")
        if self.initial is not None:
            _check(
                1 <= self.initial <= self.budget,
                "generation.initial",
                f"must be in [1, budget={self.budget}] or None, got {self.initial}",
            )
            if self.rounds > 0:
                _check(
                    self.initial < self.budget,
                    "generation.initial",
                    f"must be < budget={self.budget} when rounds > 0 (each round adds samples)",
                )
        _check(self.batch_size >= 1, "generation.batch_size", "must be >= 1")
        _check(0 < self.top_p <= 1, "generation.top_p", f"must be in (0, 1], got {self.top_p}")
        _check(self.top_k >= 0, "generation.top_k", "must be >= 0 (0 = off)")
        t = self.temperature  # beyond 10 sampling is uniform noise; inf would reach the PLM
        _check(0 <= t <= 10, "generation.temperature", f"must be in [0, 10] (0 = greedy), got {t}")
        for name in ("min_new_tokens", "max_new_tokens"):
            v = getattr(self, name)
            _check(v is None or v >= 0, f"generation.{name}", "must be >= 0 or None")
        if self.max_new_tokens is not None:
            _check(self.max_new_tokens >= 1, "generation.max_new_tokens", "must be >= 1")
            if self.min_new_tokens is not None:
                _check(
                    self.min_new_tokens <= self.max_new_tokens,
                    "generation.min_new_tokens",
                    "must be <= generation.max_new_tokens",
                )
        _check(self.num_prompt_variants >= 1, "generation.num_prompt_variants", "must be >= 1")
        _check(self.tau > 0, "generation.tau", f"must be > 0, got {self.tau}")
        _check_choice(self.plm_score, "generation.plm_score", PLM_SCORES)
        _check(self.max_attempts >= 1, "generation.max_attempts", "must be >= 1")

    @property
    def initial_size(self) -> int:
        """N_0: the resolved number of zero-shot samples."""
        if self.rounds == 0:
            return self.budget
        if self.initial is not None:
            return self.initial
        return max(1, self.budget // (self.rounds + 1))

    def round_increment(self, round_index: int) -> int:
        """Samples added after the vote of round `round_index` (0-based, < rounds)."""
        extra = self.budget - self.initial_size
        base, rem = divmod(extra, self.rounds)
        return base + (1 if round_index < rem else 0)


@dataclasses.dataclass(frozen=True, kw_only=True)
class EmbedderConfig:
    """Sentence embedder (docs/method.md §2.3).

    Attributes:
        name: spec for `wasp_jax.embed.load_embedder`.
        batch_size: texts per embedding batch.
        cache_synthetic: cache SYNTHETIC embeddings on disk (never private ones).
        precision: "auto" (bfloat16 on GPU/TPU, float32 on CPU), "float32" or "bfloat16"
            (dense products in bfloat16 with float32
            accumulation: about 2x faster on CPUs with AVX512-BF16/AMX and on GPUs/TPUs;
            cosine to the float32 embedding above 0.9999 on IMDb, docs/performance.md).
    """

    name: str = "all-minilm-l6-v2"
    batch_size: int = 64
    cache_synthetic: bool = True
    precision: str = "auto"

    def __post_init__(self):
        _check(bool(self.name), "embedder.name", "must not be empty")
        _check_choice(self.precision, "embedder.precision", ("auto", "float32", "bfloat16"))
        _check(self.batch_size >= 1, "embedder.batch_size", "must be >= 1")


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvalConfig:
    """Optional downstream evaluation at the end of a run (`wasp_jax.stm.evaluate`).

    Attributes:
        test_path: labelled JSONL test file; empty = no evaluation.
        mode: "probe" (logistic probe on frozen embeddings, fast) or "finetune" (the BERT
            STM of `wasp_jax.stm`), see `wasp_jax.stm.evaluate`.
        seeds: STM training seeds (the report shows mean and std over them).
        max_test: evaluate on a fixed random subset of this many test samples (0 = all).
        baselines: also score the zero-shot start (the run's round-0 samples) on the same
            test data, so the report shows what the private data added.
        only_private: also score an STM trained on the private texts themselves
            (OnlyPrivate). Opt-in: that score is computed from the private data without
            noise, so it is NOT differentially private, and is labelled so.
        dp_classifiers: also score two DP classifiers trained on the private data at the
            run's own (epsilon, delta) and adjacency: the DP nearest-centroid classifier and
            the DP-SGD linear probe (`wasp_jax.pipeline.stages.vote_baselines`), on the same
            test rows. Opt-in: each is a release of its own, so the run's total epsilon (in
            privacy.json) becomes the run's plus theirs (basic composition). Only for a method
            that reads private data, with a finite privacy.epsilon.
        subsample_draws: also score each training set (the synthetic set and the zero-shot
            baselines) on this many random subsets of it (one STM each, the seeds taken in
            turn), so that the report's spread includes the training data's variation, not
            only the STM seeds'; 0 = off, 2 or more for a spread.
        subsample_frac: the share of each class's rows a draw keeps (draw i is seeded by i).
    """

    test_path: str = ""
    mode: str = "probe"
    seeds: tuple[int, ...] = (0, 1, 2)
    max_test: int = 0
    baselines: bool = True
    only_private: bool = False
    dp_classifiers: bool = False
    subsample_draws: int = 3
    subsample_frac: float = 0.8

    def __post_init__(self):
        _check_choice(self.mode, "eval.mode", EVAL_MODES)
        _check(len(self.seeds) >= 1, "eval.seeds", "must hold at least one seed")
        _check(self.max_test >= 0, "eval.max_test", "must be >= 0 (0 = all)")
        _check(self.subsample_draws >= 0, "eval.subsample_draws", "must be >= 0 (0 = off)")
        frac = self.subsample_frac
        _check(0 < frac <= 1, "eval.subsample_frac", f"must be in (0, 1], got {frac}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReplayConfig:
    """Candidate pools for `method="replay"`.

    Attributes:
        pools: JSONL files ({"text", "label"}), one per PLM; the PLM name is the file stem.
            Rows are drawn in file order, per class.
    """

    pools: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, kw_only=True)
class RuntimeConfig:
    """Where caches live and how the run looks; does not change results.

    Attributes:
        cache_dir: model/embedding cache ("" = $WASP_JAX_CACHE or ~/.cache/wasp_jax).
        mesh: "none" (the embedder on the default device, each PLM on its loader's default
            mesh) or "auto" (`wasp_jax.models.sharding.make_mesh()`, used by the models and by
            the vote, whose synthetic axis it shards).
        progress: show progress bars.
        compile_cache: keep compiled XLA programs under `<cache dir>/xla` (JAX's persistent
            compilation cache), so a second run skips most compilation.
    """

    cache_dir: str = ""
    mesh: str = "none"
    progress: bool = True
    compile_cache: bool = True

    def __post_init__(self):
        _check_choice(self.mesh, "runtime.mesh", MESH_CHOICES)

"""Tests for wasp_jax.config: validation, dotted overrides, JSON round trip, config files."""

import math

import pytest

from wasp_jax import config as C
from wasp_jax.pipeline import methods
from wasp_jax.pipeline.methods import with_method


def test_defaults_valid_and_round_trip():
    cfg = C.base_config()
    assert cfg.method == "wasp"
    assert cfg.generation.initial_size == cfg.generation.budget // (cfg.generation.rounds + 1)
    again = C.WaspConfig.from_json(cfg.to_json())
    assert again == cfg
    assert isinstance(again.generation.plms, tuple)


def test_round_increments_sum_to_budget():
    cfg = C.replace(C.base_config(), **{"generation.budget": 101, "generation.rounds": 4})
    g = cfg.generation
    assert g.initial_size == 20
    assert g.initial_size + sum(g.round_increment(t) for t in range(g.rounds)) == 101


@pytest.mark.parametrize(
    "key,value,field",
    [
        ("privacy.epsilon", 0.0, "privacy.epsilon"),
        ("privacy.epsilon", -1.0, "privacy.epsilon"),
        ("privacy.delta", 1.0, "privacy.delta"),
        ("privacy.delta", 0.0, "privacy.delta"),
        ("privacy.adjacency", "swap", "privacy.adjacency"),
        ("privacy.accounting", "moments", "privacy.accounting"),
        ("voting.q", 0, "voting.q"),
        ("voting.release", ("nearest", "middle"), "voting.release"),
        ("generation.top_p", 1.5, "generation.top_p"),
        ("generation.tau", 0.0, "generation.tau"),
        ("generation.plms", (), "generation.plms"),
        ("method", "magic", "method"),
        ("data.num_parties", 0, "data.num_parties"),
        ("runtime.mesh", "ring", "runtime.mesh"),
    ],
)
def test_validation_names_field(key, value, field):
    """A bad value is refused when the config is built, or (a method-level check) when its
    method resolves it, always naming the field."""
    with pytest.raises(C.ConfigError, match=field.replace(".", r"\.")):
        methods.resolve(C.replace(C.base_config(), **{key: value}))


def test_contrastive_needs_farthest():
    with pytest.raises(C.ConfigError, match="farthest"):
        methods.resolve(C.replace(C.base_config(), **{"voting.release": ("nearest",)}))
    cfg = C.replace(
        C.base_config(), **{"voting.release": ("nearest",), "generation.contrastive": False}
    )
    assert cfg.num_histograms == 1


def test_apply_overrides_types_and_unknown_key():
    cfg = C.apply_overrides(
        C.base_config(),
        [
            "voting.q=4",
            "privacy.epsilon=2",
            "generation.plms=['tiny-llama', 'tiny-gemma3']",
            "generation.chat=none",
            "runtime.progress=false",
            "task=sst2",
            "privacy.sensitivity_override=4",
        ],
    )
    assert cfg.voting.q == 4 and cfg.privacy.epsilon == 2.0
    assert isinstance(cfg.privacy.epsilon, float)
    assert cfg.generation.plms == ("tiny-llama", "tiny-gemma3")
    assert cfg.generation.chat is None and cfg.runtime.progress is False
    assert cfg.task == "sst2" and cfg.privacy.sensitivity_override == 4.0
    assert C.apply_overrides(cfg, ["privacy.epsilon=inf"]).privacy.epsilon == math.inf
    with pytest.raises(C.ConfigError, match="did you mean 'voting.q'"):
        C.apply_overrides(cfg, ["voting.qq=3"])
    with pytest.raises(C.ConfigError, match="generation.budget"):
        C.apply_overrides(cfg, ["generation.budgte=3"])
    with pytest.raises(C.ConfigError, match="expected an integer"):
        C.apply_overrides(cfg, ["voting.q=abc"])
    with pytest.raises(C.ConfigError, match="expected true/false"):
        C.apply_overrides(cfg, ["runtime.progress=3"])
    with pytest.raises(C.ConfigError, match="key=value"):
        C.apply_overrides(cfg, ["voting.q"])


def test_from_dict_unknown_nested_key():
    d = C.base_config().to_dict()
    d["voting"]["qq"] = 1
    with pytest.raises(C.ConfigError, match="voting.q"):
        C.WaspConfig.from_dict(d)


def test_with_method_presets():
    aug = with_method(C.base_config(), "aug_pe")
    assert aug.voting.q == 1 and aug.voting.release == ("nearest",)
    assert len(aug.generation.plms) == 1 and not aug.generation.contrastive
    zg = with_method(C.base_config(), "zerogen")
    assert zg.generation.rounds == 0 and zg.generation.initial_size == zg.generation.budget
    assert not methods.get(zg.method).reads_private_data
    with pytest.raises(C.ConfigError, match="replay.pools"):
        with_method(C.base_config(), "replay")
    with pytest.raises(C.ConfigError, match="generation.plms"):
        methods.resolve(C.replace(C.base_config(), method="zerogen", **{"generation.rounds": 0}))


def test_demo_config():
    cfg = C.demo_config()
    assert cfg.generation.plms == ("smollm2-135m-instruct", "gemma3-270m")
    assert cfg.embedder.name == "all-minilm-l6-v2"
    assert cfg.privacy.epsilon == 4.0 and cfg.privacy.delta == 1e-5
    assert cfg.data.private_path.endswith("private.jsonl")


def test_load_config_py_and_json(tmp_path):
    f = tmp_path / "cfg.py"
    f.write_text(
        "from wasp_jax.config import base_config, replace\n"
        "def get_config():\n"
        "    return replace(base_config(), **{'voting.q': 2})\n"
    )
    assert C.load_config(str(f)).voting.q == 2
    j = tmp_path / "config.json"
    j.write_text(C.replace(C.base_config(), seed=3).to_json())
    assert C.load_config(str(j)).seed == 3
    bad = tmp_path / "bad.py"
    bad.write_text("x = 1\n")
    with pytest.raises(C.ConfigError, match="get_config"):
        C.load_config(str(bad))
    with pytest.raises(C.ConfigError, match="does not exist"):
        C.load_config(str(tmp_path / "missing.py"))


@pytest.mark.parametrize(
    "override,message",
    [
        ("generation.budget=1000000000", "above the limit of 1,000,000"),
        ("generation.budget=1e30", "generation.budget"),
        ("generation.max_new_tokens=100000", "above the limit of 4,096"),
        ("generation.batch_size=5000", "above the limit of 1,024"),
    ],
)
def test_budgets_and_token_limits_are_bounded_before_any_work(override, message):
    with pytest.raises((C.ConfigError, ValueError), match=message):
        C.apply_overrides(C.base_config(), [override])
    # the largest allowed budget is still accepted
    assert C.replace(C.base_config(), **{"generation.budget": 1_000_000}).generation.budget


def test_nan_is_named_as_such():
    with pytest.raises(C.ConfigError, match="privacy.epsilon: nan is not a value here"):
        C.apply_overrides(C.base_config(), ["privacy.epsilon=nan"])


@pytest.mark.parametrize(
    "changes",
    [
        {},  # q = 8, both histograms: 1.633
        {"privacy.adjacency": "replace_one"},
        {"voting.q": 1, "voting.release": ("nearest",), "generation.contrastive": False},
    ],
)
def test_sensitivity_override_below_the_derived_bound_is_refused(changes):
    """Calibrating for less than the release's L2 sensitivity would understate epsilon (at
    Q = 8 with both histograms, an override of 1.0 at a target of 4 is really epsilon 7.06)."""
    from wasp_jax.privacy.sensitivity import l2_sensitivity

    cfg = C.replace(C.base_config(), **changes)
    bound = l2_sensitivity(
        cfg.voting.q, num_histograms=cfg.num_histograms, adjacency=cfg.privacy.adjacency
    )
    below = bound * (1 - 1e-9)
    with pytest.raises(C.ConfigError, match="privacy.sensitivity_override") as err:
        methods.resolve(C.replace(cfg, **{"privacy.sensitivity_override": below}))
    msg = str(err.value)
    assert repr(below) in msg and repr(bound) in msg  # the value, the derived bound
    assert "remove the override" in msg and f">= {bound!r}" in msg  # the fix
    with pytest.raises(C.ConfigError, match="below"):
        methods.resolve(C.apply_overrides(cfg, [f"privacy.sensitivity_override={below!r}"]))
    for ok in (bound, 4.0):
        methods.resolve(C.replace(cfg, **{"privacy.sensitivity_override": ok}))


def test_sensitivity_override_on_wasp_plus_and_public_methods():
    plus = C.replace(
        C.base_config(), **{"method": "wasp_plus", "privacy.sensitivity_override": 10.0}
    )
    with pytest.raises(C.ConfigError, match="wasp_plus"):
        methods.resolve(plus)
    # a method that reads no private data releases nothing: the override is inert
    zs = with_method(C.base_config(), "zerogen")
    assert methods.resolve(C.replace(zs, **{"privacy.sensitivity_override": 0.1})).name == "zerogen"


def test_plus_centroid_share_is_refused_with_the_fix():
    with pytest.raises(C.ConfigError, match="plus.centroid_share is not a setting") as err:
        C.replace(C.base_config(), **{"plus.centroid_share": 0.2})
    assert "plus.usefulness_share" in str(err.value) and "plus.cluster_share" in str(err.value)
    d = C.base_config().to_dict()
    assert C.WaspConfig.from_dict(d | {"plus": d["plus"] | {"centroid_share": 0.0}})
    assert "plus.centroid_share" not in C.valid_keys()
    assert set(C.base_config().plus.fractions()) == {"usefulness", "per_cluster"}


def test_numbers_that_parse_to_something_else_are_refused():
    """1e400 would silently become inf (no noise); -inf gets the range message; inf itself is
    only the literal; temperature and top-p have finite ranges."""
    base = C.base_config()
    with pytest.raises(C.ConfigError, match=r"privacy.epsilon=1e400: the number is too large"):
        C.apply_overrides(base, ["privacy.epsilon=1e400"])
    with pytest.raises(C.ConfigError, match=r"privacy.epsilon: must be > 0"):
        C.apply_overrides(base, ["privacy.epsilon=-inf"])
    assert C.apply_overrides(base, ["privacy.epsilon=inf"]).privacy.epsilon == float("inf")
    for bad in ("inf", "1e400", "11"):
        with pytest.raises(C.ConfigError, match="generation.temperature"):
            C.apply_overrides(base, [f"generation.temperature={bad}"])
    for bad in ("inf", "nan", "0", "1.5"):
        with pytest.raises(C.ConfigError, match="generation.top_p"):
            C.apply_overrides(base, [f"generation.top_p={bad}"])
    assert C.apply_overrides(base, ["generation.temperature=0.7"]).generation.temperature == 0.7

"""Every experiments/configs/*.py builds a valid WaspConfig and documents how to reproduce it."""

import pathlib
import re
import runpy

import pytest

from wasp_jax import config
from wasp_jax.pipeline import methods
from wasp_jax.pipeline.methods import privacy_plan

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "configs"
CONFIG_FILES = sorted(CONFIG_DIR.glob("*.py"))
SETTINGS = {
    "base",
    "demo",
    "wasp_imdb",
    "aug_pe_imdb",
    "zerogen_imdb",
    "multi_zeroshot_imdb",
    "random_control_imdb",
    "wasp_no_contrastive_imdb",
    "wasp_no_weighting_imdb",
    "replay_imdb",
    "wasp_parties_imdb",
    "compat_paper",
    "wasp_api_imdb",
    "wasp_plus_imdb",
    "wasp_proto_imdb",
}


def _load(name: str) -> config.WaspConfig:
    return config.load_config(str(CONFIG_DIR / f"{name}.py"))


def test_every_setting_has_a_file():
    assert {p.stem for p in CONFIG_FILES} >= SETTINGS


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.stem)
def test_config_builds_validates_and_documents(path):
    cfg = config.load_config(str(path))
    assert isinstance(cfg, config.WaspConfig)
    assert methods.resolve(cfg).name == cfg.method  # the method accepts it
    # JSON round trip (what the runner stores in config.json) gives the same config
    assert config.WaspConfig.from_json(cfg.to_json()) == cfg
    doc = path.read_text().split('"""')[1]
    assert "Reproduce" in doc and "Expected runtime" in doc, path.name
    if path.stem not in ("base", "demo"):
        assert f"--config experiments/configs/{path.name}" in doc
    # paths inside the package must exist; shared-data paths only on project machines
    if methods.get(cfg.method).reads_private_data and "wasp_jax" in cfg.data.private_path:
        assert pathlib.Path(cfg.data.private_path).is_file()


def test_demo_file_is_the_embedded_default():
    assert _load("demo") == config.demo_config()


def test_diffs_from_base():
    base = _load("base")
    assert _load("wasp_imdb") == base
    assert _load("aug_pe_imdb").voting.q == 1
    assert _load("aug_pe_imdb").voting.release == ("nearest",)
    assert len(_load("zerogen_imdb").generation.plms) == 1
    assert _load("multi_zeroshot_imdb").generation.rounds == 0
    assert not methods.get(_load("multi_zeroshot_imdb").method).reads_private_data
    assert _load("random_control_imdb").method == "random_control"
    nc = _load("wasp_no_contrastive_imdb")
    assert not nc.generation.contrastive and nc.voting.release == ("nearest",)
    assert not _load("wasp_no_weighting_imdb").generation.plm_weighting
    parties = _load("wasp_parties_imdb")
    assert parties.data.num_parties == 4 and parties.data.party_alpha > 0
    # M = 300: a prepared file, and the docstring says how to write it
    doc = (CONFIG_DIR / "wasp_parties_imdb.py").read_text()
    assert "wasp-jax prepare-private --task imdb" in doc and "--num 300" in doc
    assert parties.data.private_path.endswith("imdb_train_first300.jsonl")
    compat = _load("compat_paper")
    assert compat.privacy.accounting == "classic" and compat.selection.compat_sign_flip
    # every diff keeps the base's privacy target
    for name in SETTINGS - {"demo"}:
        cfg = _load(name)
        assert (cfg.privacy.epsilon, cfg.privacy.delta) == (4.0, 1e-5), name


def test_replay_pools_exist_on_project_machines(shared_data):
    cfg = _load("replay_imdb")
    assert cfg.method == "replay" and len(cfg.replay.pools) == 6
    for pool in cfg.replay.pools:
        assert pathlib.Path(pool).is_file(), pool
    # the parties run's private file is prepared from this source (its docstring says how)
    parties = runpy.run_path(str(CONFIG_DIR / "wasp_parties_imdb.py"))
    assert parties["SOURCE"].is_file()
    assert _load("wasp_parties_imdb").data.private_path == str(parties["PRIVATE"])
    assert pathlib.Path(_load("base").eval.test_path).is_file()


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.stem)
def test_documented_sigma_matches_the_privacy_plan(path):
    """A docstring's "sigma = <number>" must be what the accountant computes for the config."""
    doc = path.read_text().split('"""')[1]
    found = re.search(r"sigma = ([0-9]+\.[0-9]+)", doc)
    plan = privacy_plan(config.load_config(str(path)))
    if plan is None:
        assert found is None, "a method without private data has no sigma"
        return
    assert found, f"{path.name}: document the sigma of the run"
    assert plan.sigma == pytest.approx(float(found.group(1)), rel=2e-3)


def test_compat_paper_reproduces_the_original_sigma():
    plan = privacy_plan(_load("compat_paper"))
    assert plan.sigma == pytest.approx(9.6896, abs=1e-4)
    assert plan.sensitivity == pytest.approx(4.0)

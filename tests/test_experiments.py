"""Every experiment preset composes, every sweep value is a valid override, and the preset's
table spec has exactly the rows and columns its sweep produces (Hydra compose API, no training)."""

from __future__ import annotations

import importlib.util
import inspect
import itertools
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from dos_bench.config import CONF_DIR
from dos_bench.reporting.cells import matches
from dos_bench.reporting.runs import Run
from dos_bench.reporting.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
CONF = CONF_DIR
PRESETS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
SEED_KEYS = {"seed", "split_seed", "data_seed"}


@pytest.fixture(scope="module", autouse=True)
def _hydra():
    """Initialise Hydra once for the module (composing is then ~0.1 s per call)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        yield


def _compose(overrides: list[str], hydra: bool = False) -> DictConfig:
    return compose("train", overrides=overrides, return_hydra_config=hydra)


@cache
def _preset(preset: str) -> DictConfig:
    return _compose([f"experiment={preset}"], hydra=True)


@cache
def _sweep(preset: str) -> dict[str, list[str]]:
    cfg = _preset(preset)
    params = cfg.hydra.sweeper.params or {}
    parser = OverridesParser.create()
    out: dict[str, list[str]] = {}
    for k, v in params.items():
        ov = parser.parse_override(f"{k}={v}")
        out[str(k)] = (
            list(ov.sweep_string_iterator())
            if ov.is_sweep_override()
            else [ov.get_value_element_as_str()]
        )
    return out


@cache
def _jobs(preset: str) -> list[Run]:
    """The composed config of every non-seed combination of the preset's sweep."""
    sweep = {k: v for k, v in _sweep(preset).items() if k not in SEED_KEYS}
    keys = sorted(sweep)
    runs = []
    for combo in itertools.product(*(sweep[k] for k in keys)):
        ovs = [f"experiment={preset}", *(f"{k}={v}" for k, v in zip(keys, combo, strict=True))]
        cfg = _compose(ovs)
        container = OmegaConf.to_container(cfg, resolve=False)
        runs.append(Run(path=Path(" ".join(ovs)), config=container, metrics=None))
    return runs


def _check_arguments(job: Run, node_path: str) -> None:
    """Every key of a `_target_` node is an argument of its class (no data, no instantiation)."""
    node = job.get(node_path)
    if not isinstance(node, dict) or "_target_" not in node:
        return
    params = inspect.signature(get_class(node["_target_"])).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    extra = sorted(k for k in node if not k.startswith("_") and k not in params)
    assert not extra, f"{job.path}: {node_path} ({node['_target_']}) has no argument(s) {extra}"


def test_there_are_presets():
    assert len(PRESETS) >= 13
    for p in PRESETS:
        assert (CONF / "experiment" / f"{p}.yaml").read_text().startswith("# @package _global_")


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_composes_with_table_selection_and_seeds(preset):
    cfg = _preset(preset)
    assert cfg.table == preset and load_spec(cfg.table).name == preset
    assert str(cfg.monitor).startswith("val/"), "checkpoints are selected on validation only"
    assert preset in str(cfg.hydra.sweep.dir)
    sweep = _sweep(preset)
    assert len(sweep.get("seed", [])) >= 2, "mean (std) needs at least two seeds"
    assert len(set(sweep["seed"])) == len(sweep["seed"])
    text = (CONF / "experiment" / f"{preset}.yaml").read_text()
    assert "Selection protocol" in text


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_override_primary_config_values(preset):
    """Values set by a preset (monitor, experiment_name, ...) reach the composed config.

    Needs `_self_` FIRST in conf/train.yaml's defaults list (as lightning-hydra-template):
    with `_self_` last, train.yaml's own keys (monitor, metrics, metric_space, split_seed,
    data.batch_size, experiment_name) silently win over every experiment preset.
    """
    cfg = _preset(preset)
    assert cfg.experiment_name == preset, (
        "conf/train.yaml must list `_self_` first in its defaults so presets can set "
        "monitor / experiment_name / data.* / split_seed"
    )
    raw = yaml.safe_load((CONF / "experiment" / f"{preset}.yaml").read_text())
    if "monitor" in raw:
        assert cfg.monitor == raw["monitor"]


@pytest.mark.parametrize("preset", PRESETS)
def test_sweep_values_are_valid_and_match_the_table(preset):
    spec = load_spec(preset)
    jobs = _jobs(preset)  # composing raises for an unknown group option or key
    assert jobs
    for job in jobs:
        for node in ("loss", "target_repr", "split", "model.encoder", "model.head"):
            _check_arguments(job, node)
        assert matches(job, spec.match), f"{job.path} fails the table's match"
        rows = [r.id for r in spec.rows if matches(job, r.match)]
        cols = [c.id for c in spec.columns if matches(job, c.match)]
        assert rows, f"{job.path}: matches no row of {preset}"
        assert cols, f"{job.path}: matches no column of {preset}"
    for row in spec.rows:
        for col in spec.columns:
            if col.id in row.na:
                continue
            hits = [j for j in jobs if matches(j, {**row.match, **col.match})]
            assert hits, f"{preset}: no sweep job produces cell ({row.id}, {col.id})"


def test_row_helpers_set_model_loss_and_representation():
    cfg = _compose(["experiment=mat2spec_table1", "setting=sumnorm_wd", "method=mat2spec"])
    assert cfg.model.name == "Mat2Spec" and cfg.loss._target_.endswith("Mat2SpecLoss")
    assert cfg.loss.pred_loss == "wd" and cfg.target_repr._target_.endswith("SumNorm")
    cfg = _compose(["experiment=mat2spec_table1", "setting=sumnorm_wd", "method=gatgnn"])
    assert cfg.model.name == "GATGNN" and cfg.loss._target_.endswith("WDLoss")
    cfg = _compose(["experiment=alignn_dos_table1", "method=ae_alignn_16"])
    assert cfg.target_repr.latent == 16 and cfg.target_repr.inner._target_.endswith("Raw")
    cfg = _compose(["experiment=xtal2dos_table3", "method=chunk_rnn_attn_17"])
    assert cfg.model.head.chunk == 17
    cfg = _compose(["experiment=dostransformer_table1", "setting=dost_phonon", "model=e3nn"])
    assert cfg.dataset.name == "phonon_tut" and cfg.split._target_.endswith("IndexFileSplit")


def test_smoke_plan_covers_every_preset():
    spec = importlib.util.spec_from_file_location(
        "tables_smoke", ROOT / "scripts" / "tables_smoke.py"
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules["tables_smoke"] = mod  # dataclasses look their module up
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.modules.pop("tables_smoke", None)
    assert set(mod.PLAN) == set(PRESETS)
    for preset, source in mod.REUSE.items():
        assert mod.check_reuse(preset, source, max_combos=2) is None

"""dos_bench.config: every resolver registered on import (none reads run state), the job
directory names built from overrides, and ``build`` surfacing our own errors unwrapped."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from dos_bench.config import MAX_JOB_DIRNAME, build, path_safe
from dos_bench.io import ConfigError


def test_resolvers_are_registered_on_import():
    for name in ("path_safe", "wandb_offline", "dos_help_groups", "dos_help_options"):
        assert OmegaConf.has_resolver(name), name
    assert not OmegaConf.has_resolver("data")  # data-derived sizes are passed, never resolved


def test_path_safe_job_names():
    assert path_safe("model/head=rnn,seed=1") == "model.head=rnn,seed=1"
    long_a = ",".join(f"key{i}=value{i}" for i in range(30))
    long_b = long_a.replace("value29", "other")
    a, b = path_safe(long_a), path_safe(long_b)
    assert len(a.encode()) <= MAX_JOB_DIRNAME and len(b.encode()) <= MAX_JOB_DIRNAME
    assert a != b and "~" in a


def test_wandb_offline_follows_the_environment(monkeypatch, tmp_path):
    from dos_bench.config import wandb_offline

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "online")
    assert wandb_offline() is False
    monkeypatch.delenv("WANDB_MODE")
    assert wandb_offline() is True
    monkeypatch.setenv("WANDB_API_KEY", "k")
    assert wandb_offline() is False


def _raise_config_error(**_kw):
    raise ConfigError("the key x.y is wrong")


def test_build_unwraps_our_errors():
    node = OmegaConf.create({"_target_": f"{__name__}._raise_config_error"})
    with pytest.raises(ConfigError, match="the key x.y is wrong"):
        build(node)
    assert build(OmegaConf.create({"_target_": "builtins.dict", "a": 1})) == {"a": 1}


def test_model_option_rules_list_the_values_the_modules_accept() -> None:
    """validation.RULES refuses bad model options before data preparation; the modules check
    them again when built. Both lists must stay the same."""
    from dos_bench.models import gemm
    from dos_bench.models.encoders import alignn, unimp
    from dos_bench.models.heads import attention, energy_embedding
    from dos_bench.validation import RULES

    modules = {
        "model.encoder.kernel": alignn._KERNELS,
        "model.encoder.order": alignn._ORDERS,
        "model.encoder.aggregate_at": unimp._AGGREGATE,
        "model.encoder.crystal_vector": unimp._CRYSTAL_VECTOR,
        "model.head.kernel": attention.ATTENTION_KERNELS,
        "model.head.fusion": energy_embedding._FUSIONS,
        "cpu_gemm": gemm.BACKENDS,
    }
    for key, values in modules.items():
        shown = ", ".join(repr(v) for v in values)
        assert RULES[key].allows == f"one of {shown}", key

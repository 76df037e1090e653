"""Validation before work: check the composed configuration before any data is loaded.

``dos-train`` (and ``dos-hpsearch`` before its first trial) calls :func:`validate_train_config`
first thing: a bad value stops the run at once with one :class:`~dos_bench.io.ConfigError` naming
the key, the value and what is allowed, e.g.::

    trainer.max_epochs: expected an integer >= 1 (or -1 for no limit), got 'abc'

instead of an ``AssertionError`` from Lightning after the data loaded, or a failure after the
first epoch. The checks are a table (:data:`RULES`: key pattern → rule, ``*`` matching any one
key of a mapping) plus a few checks across keys (:data:`CROSS_CHECKS`: split fractions summing to
1, ``min_epochs <= max_epochs``, the metric names, the monitored metric). Keys absent from the
configuration are skipped: a rule only constrains the keys a config actually sets.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dos_bench.io import ConfigError

__all__ = [
    "RULES",
    "CROSS_CHECKS",
    "Rule",
    "check_search_space",
    "check_value",
    "logged_metrics",
    "validate_train_config",
]

_ABSENT = object()


# ====================================================================================== rules
@dataclass(frozen=True)
class Rule:
    """A predicate on one value and the words that say what it allows."""

    allows: str
    test: Callable[[Any], bool]

    def __call__(self, value: Any) -> bool:
        try:
            return bool(self.test(value))
        except (TypeError, ValueError):
            return False

    def __or__(self, other: Rule) -> Rule:
        return Rule(f"{self.allows} or {other.allows}", lambda v: self(v) or other(v))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def _fmt(x: float) -> str:
    return f"{x:g}"


def _bounds(ge=None, gt=None, le=None, lt=None) -> tuple[str, Callable[[float], bool]]:
    lo = (ge, "[") if ge is not None else (gt, "(") if gt is not None else None
    hi = (le, "]") if le is not None else (lt, ")") if lt is not None else None
    if lo and hi:
        text = f"in {lo[1]}{_fmt(lo[0])}, {_fmt(hi[0])}{hi[1]}"
    elif lo:
        text = f"{'>=' if ge is not None else '>'} {_fmt(lo[0])}"
    elif hi:
        text = f"{'<=' if le is not None else '<'} {_fmt(hi[0])}"
    else:
        text = ""

    def ok(v: float) -> bool:
        return (
            (ge is None or v >= ge)
            and (gt is None or v > gt)
            and (le is None or v <= le)
            and (lt is None or v < lt)
        )

    return text, ok


def integer(*, null: bool = False, special: dict[int, str] | None = None, **bounds: Any) -> Rule:
    """An int (not a bool) within ``bounds`` (ge/gt/le/lt), or one of ``special`` values."""
    text, ok = _bounds(**bounds)
    special = special or {}
    words = f"an integer {text}".rstrip()
    extra = [f"{k} for {why}" for k, why in special.items()]
    if null:
        extra.append("null")
    if extra:
        words += f" (or {', or '.join(extra)})"
    return Rule(
        words,
        lambda v: (v is None and null) or (_is_int(v) and (v in special or ok(v))),
    )


def number(*, null: bool = False, **bounds: Any) -> Rule:
    """A finite int or float within ``bounds`` (ge/gt/le/lt)."""
    text, ok = _bounds(**bounds)
    words = f"a number {text}".rstrip() + (" (or null)" if null else "")
    return Rule(words, lambda v: (v is None and null) or (_is_num(v) and ok(v)))


def one_of(*choices: Any, null: bool = False) -> Rule:
    allowed = list(choices) + ([None] if null else [])
    shown = ", ".join("null" if c is None else repr(c) for c in allowed)
    return Rule(
        f"one of {shown}",
        lambda v: any(v == c and type(v) is type(c) for c in allowed),
    )


def boolean(*, null: bool = False) -> Rule:
    return Rule(
        "true or false" + (" (or null)" if null else ""),
        lambda v: isinstance(v, bool) or (v is None and null),
    )


def pair(rule: Rule) -> Rule:
    """A list of two values, each passing ``rule``."""
    return Rule(
        f"a list of two values, each {rule.allows}",
        lambda v: isinstance(v, (list, tuple)) and len(v) == 2 and all(rule(x) for x in v),
    )


def _device_list(v: Any) -> bool:
    if isinstance(v, str):
        parts = [p.strip() for p in v.split(",") if p.strip()]
        return bool(parts) and all(p.isdigit() or p == "-1" for p in parts)
    if isinstance(v, (list, tuple)):
        return bool(v) and all(_is_int(x) and x >= 0 for x in v)
    return _is_int(v) and (v >= 1 or v == -1)


DEVICES = Rule(
    "an integer >= 1, -1 for all, 'auto', a list of device indices or a string such as '0,1'",
    lambda v: v == "auto" or _device_list(v),
)


def _lightning_precisions() -> tuple[Any, ...]:
    """The precision values the installed Lightning accepts (its ``_PRECISION_INPUT``)."""
    import typing

    try:
        from lightning.fabric.connector import _PRECISION_INPUT
    except ImportError:  # pragma: no cover - older or newer Lightning layouts
        return ("16-mixed", "bf16-mixed", "32-true", "64-true", "16-true", "bf16-true", 16, 32, 64)
    out: list[Any] = []
    for lit in typing.get_args(_PRECISION_INPUT):
        out.extend(typing.get_args(lit) or (lit,))
    return tuple(out)


def _lightning_strategies() -> tuple[str, ...]:
    try:
        from lightning.pytorch.strategies import StrategyRegistry

        names = tuple(StrategyRegistry.available_strategies())
    except ImportError:  # pragma: no cover
        names = ("ddp", "ddp_spawn", "fsdp", "deepspeed")
    return ("auto", *names)


class _Lazy:
    """A rule built on first use (Lightning's own lists are read only when needed)."""

    def __init__(self, make: Callable[[], Rule]) -> None:
        self._make, self._rule = make, None

    def get(self) -> Rule:
        if self._rule is None:
            self._rule = self._make()
        return self._rule


def _precision_rule() -> Rule:
    return one_of(*_lightning_precisions(), null=True)


def _strategy_rule() -> Rule:
    names = _lightning_strategies()
    return Rule(
        f"one of {', '.join(names)} (or a mapping with _target_)",
        lambda v: v in names or (isinstance(v, dict) and "_target_" in v),
    )


# dos_bench.training.allocator.MODES (not imported: no side effects here)
_MODES = ("retain", "system")
_GEMMS = ("onednn", "torch")  # dos_bench.models.gemm.BACKENDS (importing it would import torch)
_BATCH_LIMIT = integer(ge=0) | number(ge=0, le=1, null=True)
_MONITOR = "<monitor>"  # marker: checked against the metrics the run logs

#: key pattern -> rule; ``*`` matches any one key of a mapping; absent keys are skipped
RULES: dict[str, Rule | _Lazy | str] = {
    # ---- run
    "seed": integer(ge=0),
    "split_seed": integer(ge=0),
    "data_seed": integer(ge=0),
    "num_threads": integer(ge=1, null=True),
    "compile": boolean(),
    "cpu_allocator": one_of(*_MODES),
    "cpu_gemm": one_of(*_GEMMS),
    "metric_space": one_of("native", "normalised"),
    "scheduler_interval": one_of("epoch", "step"),
    "ddp_launcher": one_of("elastic", "lightning"),
    "progress": boolean(),
    "plots": boolean(),
    "skip_completed": boolean(),
    "monitor": _MONITOR,
    # ---- trainer (lightning.Trainer keywords)
    "trainer.max_epochs": integer(ge=1, special={-1: "no limit"}),
    "trainer.min_epochs": integer(ge=0, null=True),
    "trainer.max_steps": integer(ge=1, special={-1: "no limit"}),
    "trainer.min_steps": integer(ge=0, null=True),
    "trainer.precision": _Lazy(_precision_rule),
    "trainer.accelerator": one_of("auto", "cpu", "gpu", "cuda", "mps", "tpu"),
    "trainer.strategy": _Lazy(_strategy_rule),
    "trainer.devices": DEVICES,
    "trainer.num_nodes": integer(ge=1),
    "trainer.accumulate_grad_batches": integer(ge=1),
    "trainer.gradient_clip_val": number(ge=0, null=True),
    "trainer.gradient_clip_algorithm": one_of("norm", "value", null=True),
    "trainer.log_every_n_steps": integer(ge=1, null=True),
    "trainer.check_val_every_n_epoch": integer(ge=1, null=True),
    "trainer.val_check_interval": integer(ge=1) | number(gt=0, le=1, null=True),
    "trainer.limit_train_batches": _BATCH_LIMIT,
    "trainer.limit_val_batches": _BATCH_LIMIT,
    "trainer.limit_test_batches": _BATCH_LIMIT,
    "trainer.num_sanity_val_steps": integer(ge=0, special={-1: "all"}, null=True),
    "trainer.fast_dev_run": boolean() | integer(ge=0),
    "trainer.deterministic": boolean(null=True) | one_of("warn"),
    "trainer.benchmark": boolean(null=True),
    "trainer.enable_progress_bar": boolean(null=True),
    "trainer.enable_model_summary": boolean(null=True),
    "trainer.enable_checkpointing": boolean(null=True),
    "trainer.sync_batchnorm": boolean(),
    "trainer.use_distributed_sampler": boolean(),
    "trainer.inference_mode": boolean(),
    # ---- optimizer (torch.optim keywords)
    "optimizer.lr": number(gt=0),
    "optimizer.weight_decay": number(ge=0),
    "optimizer.betas": pair(number(ge=0, lt=1)),
    "optimizer.eps": number(gt=0),
    "optimizer.momentum": number(ge=0),
    # ---- scheduler (torch.optim.lr_scheduler keywords)
    "scheduler.T_max": integer(ge=1),
    "scheduler.eta_min": number(ge=0),
    "scheduler.step_size": integer(ge=1),
    "scheduler.gamma": number(gt=0),
    "scheduler.factor": number(gt=0, lt=1),
    "scheduler.patience": integer(ge=0),
    # ---- data (dos_bench.data.datamodule.DOSDataModule)
    "data.batch_size": integer(ge=1),
    "data.eval_batch_size": integer(ge=1, null=True),
    "data.num_workers": integer(ge=0),
    "data.pin_memory": boolean(),
    "data.limit": integer(ge=1, null=True),
    "data.shuffle_seed": integer(ge=0),
    # ---- split (dos_bench.data.splits; train/val/test fractions: see CROSS_CHECKS)
    "split.train_fraction": number(gt=0, le=1),
    "split.train_fraction_seed": integer(ge=0),
    "split.val_fraction": number(gt=0, lt=1),
    "split.seed": integer(ge=0),
    # ---- model options with a fixed set of values (the modules check them again when built;
    # here they are refused before any data is prepared or any run file is written)
    "model.encoder.kernel": one_of("auto", "torch"),  # encoders.alignn._KERNELS
    "model.encoder.order": one_of("line_first", "crystal_first"),  # encoders.alignn._ORDERS
    "model.encoder.aggregate_at": one_of("centre", "neighbour"),  # encoders.unimp._AGGREGATE
    "model.encoder.crystal_vector": one_of("mean_composition", "mean"),  # unimp._CRYSTAL_VECTOR
    "model.head.kernel": one_of("auto", "torch"),  # heads.attention.ATTENTION_KERNELS
    "model.head.fusion": one_of("add", "concat"),  # heads.energy_embedding._FUSIONS
    "model.head.causal": boolean(),
    "model.head.attn_dropout": number(ge=0, lt=1),
    # ---- callbacks (ModelCheckpoint, EarlyStopping)
    "callbacks.*.monitor": _MONITOR,
    "callbacks.*.mode": one_of("min", "max"),
    "callbacks.*.patience": integer(ge=0),
    "callbacks.*.save_top_k": integer(ge=0, special={-1: "all"}),
    # ---- evaluation (dos_bench.physics.FermiProbe)
    "evaluation.derived": boolean(),
    "evaluation.fermi_probe": boolean(),
    "evaluation.fermi_probe_args.epochs": integer(ge=1),
    "evaluation.fermi_probe_args.lr": number(gt=0),
    "evaluation.fermi_probe_args.batch_size": integer(ge=1),
    "evaluation.fermi_probe_args.weight_decay": number(ge=0),
    "evaluation.fermi_probe_args.val_fraction": number(ge=0, lt=1),
}


# ====================================================================================== lookup
def _plain(v: Any) -> Any:
    if isinstance(v, (DictConfig, ListConfig)):
        return OmegaConf.to_container(v, resolve=True)
    return v


def _get(cfg: Any, key: str) -> Any:
    """The resolved value at ``key`` or ``_ABSENT``; an unresolvable one is a ConfigError."""
    try:
        node = cfg
        for part in key.split("."):
            if not isinstance(node, DictConfig) or part not in node:
                return _ABSENT
            node = node[part]
        return _plain(node)
    except OmegaConfBaseException as exc:
        msg = str(exc).splitlines()[0]
        raise ConfigError(f"{key}: cannot read the value ({msg})") from None


def _expand(cfg: Any, pattern: str) -> Iterator[str]:
    """The keys of ``cfg`` matching ``pattern`` (``*`` = any one key of a mapping)."""
    head, _, rest = pattern.partition("*")
    if not _:
        yield pattern
        return
    base = head.rstrip(".")
    node = cfg if not base else OmegaConf.select(cfg, base, default=None)
    if not isinstance(node, DictConfig):
        return
    for k in node.keys():
        if node.get(k) is None:  # a disabled callback (null)
            continue
        yield from _expand(cfg, f"{base + '.' if base else ''}{k}{rest}")


def _rule_for(key: str) -> Rule | str | None:
    for pattern, rule in RULES.items():
        parts, kparts = pattern.split("."), key.split(".")
        if len(parts) == len(kparts) and all(
            p in ("*", k) for p, k in zip(parts, kparts, strict=True)
        ):
            return rule.get() if isinstance(rule, _Lazy) else rule
    return None


def _fail(key: str, value: Any, allows: str) -> ConfigError:
    return ConfigError(f"{key}: expected {allows}, got {value!r}")


# ====================================================================================== metrics
#: components a loss logs as ``train/loss_<name>`` (dos_bench.losses, ``last_components``)
LOSS_COMPONENTS = {"Mat2SpecLoss": ("pred_feat", "pred_label", "kl", "contrast")}


def logged_metrics(cfg: Any) -> list[str]:
    """The names the run logs (dos_bench.training.module): ``train/loss``, ``val/loss``,
    ``val/<metric>`` for each configured metric, and a loss's ``train/loss_<component>`` values."""
    names = ["val/loss", "train/loss"]
    metrics = _get(cfg, "metrics")
    if isinstance(metrics, list):
        names[1:1] = [f"val/{m}" for m in metrics if isinstance(m, str)]
    target = str(_get(cfg, "loss._target_") or "")
    for cls, parts in LOSS_COMPONENTS.items():
        if target.endswith(cls):
            names += [f"train/loss_{p}" for p in parts]
    return names


def _check_monitor(cfg: Any, key: str, value: Any) -> None:
    logged = logged_metrics(cfg)
    if value in logged:
        return
    shown = ", ".join(logged)
    if isinstance(value, str) and value.startswith("test/"):
        raise ConfigError(
            f"{key}: {value!r} is a test metric; select checkpoints on validation (one of {shown})"
        )
    close = difflib.get_close_matches(str(value), logged, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ConfigError(
        f"{key}: {value!r} is not a metric this run logs; {hint}expected one of {shown} "
        "(val/<name> for each entry of metrics)"
    )


def _check_metrics(cfg: Any) -> None:
    metrics = _get(cfg, "metrics")
    if metrics is _ABSENT:
        return
    if not isinstance(metrics, list) or not metrics or not all(isinstance(m, str) for m in metrics):
        raise _fail("metrics", metrics, "a non-empty list of metric names")
    from dos_bench.metrics import METRICS, PER_SAMPLE

    known = sorted(dict.keys(METRICS))
    for m in metrics:
        if m not in METRICS:
            close = difflib.get_close_matches(m, known, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(
                f"metrics: unknown metric {m!r}; {hint}choose from {known} or "
                f"frac_<m>_lt_<threshold> with <m> in {list(PER_SAMPLE)}"
            )


# =============================================================================== across keys
def _check_split_fractions(cfg: Any) -> None:
    target = str(_get(cfg, "split._target_") or "")
    if not target.endswith("RandomSplit"):
        return  # index-file splits use split.train/val/test for paths
    fr = {k: _get(cfg, f"split.{k}") for k in ("train", "val", "test")}
    rule = number(ge=0, le=1)
    for k, v in fr.items():
        if v is not _ABSENT and not rule(v):
            raise _fail(f"split.{k}", v, rule.allows)
    if _ABSENT not in fr.values() and abs(sum(fr.values()) - 1.0) > 1e-6:
        raise ConfigError(
            f"split.train/val/test: expected fractions that sum to 1, got "
            f"train={fr['train']}, val={fr['val']}, test={fr['test']} "
            f"(sum {sum(fr.values()):g})"
        )


def _check_epochs(cfg: Any) -> None:
    lo, hi = _get(cfg, "trainer.min_epochs"), _get(cfg, "trainer.max_epochs")
    if _is_int(lo) and _is_int(hi) and hi != -1 and lo > hi:
        raise ConfigError(f"trainer.min_epochs: expected at most trainer.max_epochs={hi}, got {lo}")


#: checks that look at several keys at once (run after the table)
CROSS_CHECKS: tuple[Callable[[Any], None], ...] = (
    _check_metrics,
    _check_split_fractions,
    _check_epochs,
)


# ============================================================================== entry points
def check_value(key: str, value: Any, where: str | None = None) -> None:
    """Check one value against the rule of ``key`` (if any); ``where`` prefixes the message."""
    rule = _rule_for(key)
    if rule is None or rule == _MONITOR:
        return
    if not rule(_plain(value)):
        label = key if where is None else (where if where.endswith(key) else f"{where} ({key})")
        raise _fail(label, _plain(value), rule.allows)


def validate_train_config(cfg: DictConfig) -> None:
    """Check the training configuration before any work; raises one :class:`ConfigError`."""
    for pattern, rule in RULES.items():
        for key in _expand(cfg, pattern):
            value = _get(cfg, key)
            if value is _ABSENT:
                continue
            rule = rule.get() if isinstance(rule, _Lazy) else rule
            if rule == _MONITOR:
                if value is None and key != "monitor":
                    continue  # a callback without a monitor (ModelCheckpoint: every epoch)
                _check_monitor(cfg, key, value)
            elif not rule(value):
                hint = ""
                if key == "scheduler.T_max":
                    hint = " (it follows trainer.max_epochs unless set; or use scheduler=none)"
                raise ConfigError(f"{_fail(key, value, rule.allows)}{hint}")
    for check in CROSS_CHECKS:
        check(cfg)


def check_search_space(space: Iterable[Any]) -> None:
    """The values a search may set (choices, or low and high) obey the keys' rules.

    ``space``: :class:`dos_bench.hpsearch.SearchParam` objects (``name``, ``keys``, ``choices``,
    ``low``, ``high``).
    """
    for p in space:
        values: Sequence[Any] = p.choices if p.choices is not None else (p.low, p.high)
        for key in p.keys:
            for v in values:
                check_value(key, v, where=f"hparams_search.params.{p.name}")

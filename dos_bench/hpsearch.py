"""``dos-hpsearch``: Optuna hyperparameter search over the training config (Hydra 1.3 compatible).

::

    python -m dos_bench.hpsearch hparams_search=dostransformer dataset=mp_edos_128
    python -m dos_bench.hpsearch hparams_search=mat2spec_grid hparams_search.n_trials=240

Why a small driver and not ``hydra/sweeper=optuna``: the released hydra-optuna-sweeper needs
``optuna<3`` (pip resolves optuna 2.10.1, which predates SQLAlchemy 2 and numpy 2 and pulls
``cliff``/``cmd2``), and unpinned Hydra plugin installs can pull a Hydra 1.4 pre-release; we pin
``hydra-core<1.4`` (style.md "Ecosystem decisions"). The driver uses current Optuna and Hydra's
compose API, so it needs no plugin:

* every argument is a Hydra override of the training config (``conf/train.yaml``);
  ``hparams_search=NAME`` selects ``conf/hparams_search/NAME.yaml``, a ``# @package _global_``
  overlay holding the search space and the study settings under ``hparams_search:`` (it may also
  override config groups, e.g. ``/model``);
* per trial it samples the space, composes the config once more with the sampled values as
  overrides, and runs :func:`dos_bench.train.train` in ``<dir>/trial_NNN`` (the trial's own run
  directory; a DDP trainer works as in a single run, see :mod:`dos_bench.training.distributed`);
* the objective is the value ``train`` returns to sweepers: the best monitored *validation*
  metric (``metrics.json["selection"]["best_val"]``); test metrics are stored with each trial
  for the table but never optimised;
* the study lives in ``<dir>/study.db`` (SQLite): re-running the same command resumes it and
  runs only the missing trials; several drivers may share it (e.g. one per GPU or SLURM job);
  trials of a killed driver are marked failed by Optuna's heartbeat after ``grace_period``;
* ``<dir>/best_params.yaml`` (best value, parameters, the overrides and a command that reruns
  the best trial) and ``<dir>/trials.csv`` are rewritten after every trial.

Search-space entries (``hparams_search.params``), one per name::

    optimizer.lr: [1.0e-4, 5.0e-4, 1.0e-3]            # categorical choices of one key
    optimizer.lr: {low: 5.0e-4, high: 1.0e-2, step: 5.0e-4}   # float grid (int if all ints)
    optimizer.lr: {low: 1.0e-5, high: 1.0e-2, log: true}      # continuous, log scale
    d: {keys: [model.encoder.hidden, model.head.d], choices: [64, 128, 256]}  # one value, many keys
"""

from __future__ import annotations

import csv
import logging
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dos_bench.config import CONF_DIR as PACKAGED_CONF_DIR
from dos_bench.io import ConfigError, DataError, atomic_write

__all__ = ["SearchParam", "parse_space", "main", "run_search", "format_override"]

log = logging.getLogger("dos_bench.hpsearch")
CONF_DIR = str(PACKAGED_CONF_DIR)
SAMPLERS = ("tpe", "random", "grid")


class SearchParam:
    """One dimension of the search space: a name, the override keys it sets, a distribution."""

    def __init__(self, name: str, spec: Any) -> None:
        self.name = name
        if isinstance(spec, (list, tuple)):
            spec = {"choices": list(spec)}
        if not isinstance(spec, dict):
            raise ConfigError(
                f"hparams_search.params.{name}: expected a list of choices or a mapping with "
                f"choices / low, high[, step, log], got {spec!r}"
            )
        unknown = set(spec) - {"keys", "choices", "low", "high", "step", "log"}
        if unknown:
            raise ConfigError(f"hparams_search.params.{name}: unknown fields {sorted(unknown)}")
        keys = spec.get("keys") or [name]
        self.keys = [keys] if isinstance(keys, str) else list(keys)
        self.choices = list(spec["choices"]) if "choices" in spec else None
        self.low, self.high = spec.get("low"), spec.get("high")
        self.step, self.log = spec.get("step"), bool(spec.get("log", False))
        if self.choices is None and (self.low is None or self.high is None):
            raise ConfigError(f"hparams_search.params.{name}: give choices, or low and high")
        if self.choices is not None and not self.choices:
            raise ConfigError(f"hparams_search.params.{name}: choices is empty")
        if self.choices is None and not self.low < self.high:
            raise ConfigError(f"hparams_search.params.{name}: low must be below high")
        if self.step is not None and self.log:
            raise ConfigError(f"hparams_search.params.{name}: step and log exclude each other")
        self.is_int = self.choices is None and all(
            isinstance(v, int) and not isinstance(v, bool)
            for v in (self.low, self.high, self.step or 1)
        )

    def grid(self) -> list[Any]:
        """All values, for the grid sampler (choices, or low..high by step)."""
        if self.choices is not None:
            return list(self.choices)
        if self.step is None:
            raise ConfigError(
                f"hparams_search.params.{self.name}: the grid sampler needs choices or a step"
            )
        n = int(round((self.high - self.low) / self.step))
        values = [self.low + k * self.step for k in range(n + 1)]
        return [int(v) if self.is_int else _tidy(v) for v in values]

    def suggest(self, trial: Any) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(self.name, self.choices)
        if self.is_int:
            return trial.suggest_int(
                self.name, self.low, self.high, step=self.step or 1, log=self.log
            )
        value = trial.suggest_float(
            self.name, float(self.low), float(self.high), step=self.step, log=self.log
        )
        return _tidy(value) if self.step is not None else value

    def overrides(self, value: Any) -> list[str]:
        return [f"{k}={format_override(value)}" for k in self.keys]


def _tidy(x: float) -> float:
    """Drop floating-point noise of a grid value (0.0045000000000000005 -> 0.0045)."""
    return float(f"{x:.12g}")


def format_override(value: Any) -> str:
    """A Python value as a Hydra override value (strings quoted when needed)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_override(v) for v in value) + "]"
    text = str(value)
    if text.replace("_", "").replace("-", "").replace(".", "").isalnum():
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def parse_space(params: Any) -> list[SearchParam]:
    if not params:
        raise ConfigError("hparams_search.params is empty: nothing to search")
    if OmegaConf.is_config(params):
        params = OmegaConf.to_container(params, resolve=True)
    return [SearchParam(str(k), v) for k, v in params.items()]


def _split_args(argv: Sequence[str]) -> tuple[list[str], str]:
    """Turn ``hparams_search=NAME`` into an append override; returns (overrides, NAME)."""
    out, name = [], None
    for a in argv:
        key = a.split("=", 1)[0]
        if key in ("hparams_search", "+hparams_search", "++hparams_search"):
            name = a.split("=", 1)[1]
            out.append(f"+hparams_search={name}")
        else:
            out.append(a)
    if not name:
        names = sorted(p.stem for p in (Path(CONF_DIR) / "hparams_search").glob("*.yaml"))
        raise ConfigError(f"choose a search space: hparams_search=NAME, one of {names}")
    return out, name


def _compose(overrides: list[str]) -> DictConfig:
    from hydra import compose
    from hydra.errors import HydraException

    try:
        return compose(config_name="train", overrides=overrides)
    except HydraException as exc:
        raise ConfigError(f"could not compose the training config: {exc}") from None


def _make_sampler(settings: DictConfig, space: list[SearchParam]):
    import optuna

    spec = settings.get("sampler") or {}
    name = str(spec.get("name", "tpe"))
    seed = spec.get("seed")
    if name == "tpe":
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=int(spec.get("n_startup_trials", 10))
        )
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        return optuna.samplers.GridSampler({p.name: p.grid() for p in space}, seed=seed)
    raise ConfigError(f"hparams_search.sampler.name={name!r}: choose one of {list(SAMPLERS)}")


def run_search(argv: Sequence[str]) -> dict[str, Any]:
    """Run (or resume) the study described by the overrides ``argv``; returns the summary."""
    import optuna
    from hydra import initialize_config_dir

    from dos_bench.train import train

    user_overrides, search_name = _split_args(argv)
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        base = _compose(user_overrides)
        if "hparams_search" not in base:
            raise ConfigError(f"conf/hparams_search/{search_name}.yaml has no hparams_search: key")
        settings = base.hparams_search
        space = parse_space(settings.get("params"))
        # validation before work: the base config and every value the search may set
        from dos_bench.validation import check_search_space, validate_train_config

        validate_train_config(base)
        check_search_space(space)
        direction = str(settings.get("direction", "minimize"))
        if direction not in ("minimize", "maximize"):
            raise ConfigError(f"hparams_search.direction={direction!r}: minimize or maximize")
        sampler = _make_sampler(settings, space)
        study_name = str(settings.get("study_name") or search_name)
        out = Path(str(settings.get("dir") or f"outputs/hpsearch/{study_name}")).resolve()
        n_trials = int(settings.get("n_trials", 20))
        # fail fast on a key that does not exist, before any trial runs or anything is written
        probe = [o for p in space for o in p.overrides(p.choices[0] if p.choices else p.low)]
        _compose(user_overrides + probe + [f"paths.output_dir={format_override(str(out))}"])
        out.mkdir(parents=True, exist_ok=True)
        _setup_logging(out / "hpsearch.log")

        storage = optuna.storages.RDBStorage(
            f"sqlite:///{out / 'study.db'}",
            heartbeat_interval=int(settings.get("heartbeat_s", 60)),
            grace_period=int(settings.get("grace_period_s", 180)),
        )
        study = optuna.create_study(
            study_name=study_name,
            storage=storage,
            sampler=sampler,
            direction=direction,
            load_if_exists=True,
        )
        optuna.storages.fail_stale_trials(study)
        study.set_user_attr("monitor", str(base.monitor))
        study.set_user_attr("overrides", [o for o in user_overrides])
        done = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
        remaining = max(n_trials - done, 0)
        log.info(
            "study %s in %s: %d complete, running %d more (monitor %s, %s)",
            study_name,
            out / "study.db",
            done,
            remaining,
            base.monitor,
            direction,
        )

        def objective(trial: optuna.trial.Trial) -> float:
            run_dir = out / f"trial_{trial.number:03d}"
            sampled = {p.name: p.suggest(trial) for p in space}
            param_overrides = [o for p in space for o in p.overrides(sampled[p.name])]
            trial.set_user_attr("overrides", param_overrides)
            trial.set_user_attr("run_dir", str(run_dir))
            cfg = _compose(
                user_overrides
                + param_overrides
                + [f"paths.output_dir={format_override(str(run_dir))}"]
            )
            log.info("trial %d: %s", trial.number, " ".join(param_overrides))
            metrics = train(cfg)
            trial.set_user_attr("test", metrics.get("test", {}))
            best_val = (metrics.get("selection") or {}).get("best_val")
            if best_val is None or not math.isfinite(best_val):
                raise FloatingPointError(f"trial {trial.number}: no finite {base.monitor}")
            return float(best_val)

        def write_summary(study: optuna.Study, _trial: Any = None) -> None:
            _write_summary(study, out, user_overrides, space)

        if remaining:
            study.optimize(
                objective,
                n_trials=remaining,
                catch=(FloatingPointError,),
                callbacks=[write_summary],
                gc_after_trial=True,
            )
        summary = _write_summary(study, out, user_overrides, space)
    _print_table(study, space, summary)
    return summary


def _write_summary(
    study: Any, out: Path, user_overrides: list[str], space: list[SearchParam]
) -> dict[str, Any]:
    import optuna

    trials = sorted(study.trials, key=lambda t: t.number)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    summary: dict[str, Any] = {
        "study_name": study.study_name,
        "monitor": study.user_attrs.get("monitor"),
        "direction": study.direction.name.lower(),
        "n_trials": len(trials),
        "n_complete": len(complete),
        "storage": str(out / "study.db"),
    }
    if complete:
        best = study.best_trial
        overrides = list(best.user_attrs.get("overrides", []))
        summary.update(
            best_value=best.value,
            best_trial=best.number,
            best_params=dict(best.params),
            best_overrides=overrides,
            best_run_dir=best.user_attrs.get("run_dir"),
            best_test=best.user_attrs.get("test"),
            # the search file may override config groups (model, loss): keep it in the command
            command="python -m dos_bench.train " + " ".join(user_overrides + overrides),
        )
    with atomic_write(out / "best_params.yaml") as tmp:
        tmp.write_text(OmegaConf.to_yaml(OmegaConf.create(summary)))

    test_keys = sorted({k for t in trials for k in (t.user_attrs.get("test") or {})})
    with atomic_write(out / "trials.csv") as tmp:
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(
                ["number", "state", "value", "duration_s"]
                + [p.name for p in space]
                + [f"test_{k}" for k in test_keys]
                + ["run_dir"]
            )
            for t in trials:
                dur = t.duration.total_seconds() if t.duration is not None else ""
                test = t.user_attrs.get("test") or {}
                w.writerow(
                    [t.number, t.state.name, "" if t.value is None else t.value, dur]
                    + [t.params.get(p.name, "") for p in space]
                    + [test.get(k, "") for k in test_keys]
                    + [t.user_attrs.get("run_dir", "")]
                )
    return summary


def _print_table(study: Any, space: list[SearchParam], summary: dict[str, Any]) -> None:
    names = [p.name for p in space]
    widths = [max(12, len(n) + 2) for n in names]
    lines = [
        f"\nstudy {summary['study_name']}: {summary['n_complete']} of "
        f"{summary['n_trials']} trials complete ({summary['monitor']}, "
        f"{summary['direction']})",
        f"{'trial':>6} {'state':>9} {'value':>11}"
        + "".join(f"{n:>{w}}" for n, w in zip(names, widths, strict=True)),
    ]
    for t in sorted(study.trials, key=lambda t: t.number):
        value = "" if t.value is None else f"{t.value:.5g}"
        cells = [_cell(t.params.get(n, "")) for n in names]
        lines.append(
            f"{t.number:>6} {t.state.name:>9} {value:>11}"
            + "".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True))
        )
    if "best_trial" in summary:
        lines.append(
            f"best: trial {summary['best_trial']} = {summary['best_value']:.4g}; "
            f"rerun with: {summary['command']}"
        )
    print("\n".join(lines), flush=True)


def _cell(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _setup_logging(logfile: Path) -> None:
    root = logging.getLogger()
    if any(
        isinstance(h, logging.FileHandler) and h.baseFilename == str(logfile) for h in root.handlers
    ):
        return
    fmt = logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    handlers: list[logging.Handler] = [logging.FileHandler(logfile, mode="a")]
    if not root.handlers:
        handlers.append(logging.StreamHandler(sys.stdout))
    for h in handlers:
        h.setFormatter(fmt)
        root.addHandler(h)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    t0 = time.perf_counter()
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    try:
        run_search(args)
    except (ConfigError, DataError) as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    log.info("search finished in %.1f s", time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    from dos_bench.hpsearch import main as _main  # the importable module (see dos_bench.train)

    raise SystemExit(_main())

"""Finding runs in multirun directories and reading their configuration and metrics.

Every directory under the given roots holding ``metrics.json`` or a ``.hydra/`` folder is a run
(the search does not descend into a run, nor into ``checkpoints``/``csv``). A run with
``.hydra/`` but no readable ``metrics.json`` is a *failed* (or unfinished) run, kept with
``metrics=None``. The configuration comes from ``config_resolved.yaml`` (written by
``dos-train``) or else ``.hydra/config.yaml``. Config and metric paths are dotted; keys may
contain dots themselves (:func:`get_path`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["Run", "find_runs", "get_path"]

_RUN_SKIP_DIRS = {"checkpoints", "csv", "__pycache__", ".hydra"}


@dataclass
class Run:
    """One run directory: its configuration, its metrics (``None`` if it failed) and status."""

    path: Path
    config: dict[str, Any]
    metrics: dict[str, Any] | None
    error: str | None = None
    _omega: Any = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.metrics is not None

    @property
    def seed(self) -> Any:
        return self.get("seed")

    def get(self, key: str) -> Any:
        """A config value by dotted path; interpolations of ``.hydra/config.yaml`` are resolved
        where possible (resolvers that only exist inside a Hydra run give the raw string)."""
        found, value = _lookup(self.config, key)
        if not found:
            return None
        if isinstance(value, str) and "${" in value:
            try:
                from omegaconf import OmegaConf

                if self._omega is None:
                    self._omega = OmegaConf.create(self.config)
                resolved = OmegaConf.select(self._omega, key, throw_on_resolution_failure=False)
                if resolved is not None:
                    return resolved
            except Exception:  # noqa: BLE001 - an unresolvable string stays as it is
                pass
        return value

    def predictions(self) -> Path | None:
        p = self.path / "predictions.npz"
        return p if p.is_file() else None


def _lookup(obj: Any, path: str | Sequence[str]) -> tuple[bool, Any]:
    """``(found, value)`` for a dotted path; keys may contain dots (longest key wins)."""
    tokens = path.split(".") if isinstance(path, str) else list(path)
    cur = obj
    i = 0
    while i < len(tokens):
        if isinstance(cur, Mapping):
            for j in range(len(tokens), i, -1):
                key = ".".join(tokens[i:j])
                if key in cur:
                    cur, i = cur[key], j
                    break
            else:
                return False, None
        elif isinstance(cur, (list, tuple)) and tokens[i].lstrip("-").isdigit():
            k = int(tokens[i])
            if not -len(cur) <= k < len(cur):
                return False, None
            cur, i = cur[k], i + 1
        else:
            return False, None
    return True, cur


def get_path(obj: Any, path: str) -> Any:
    """The value at a dotted ``path`` in nested mappings, or ``None``.

    Keys may themselves contain dots: at each level the longest key present wins, so
    ``test.frac_mae_lt_0.02`` and ``test_groups.n_species.1.rmse`` both work.
    """
    return _lookup(obj, path)[1]


def _read_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("not a mapping")
    return data


def _load_run(d: Path) -> Run:
    config: dict[str, Any] = {}
    errors = []
    for name in ("config_resolved.yaml", ".hydra/config.yaml"):
        p = d / name
        if p.is_file():
            try:
                config = _read_yaml(p)
                break
            except (yaml.YAMLError, ValueError, OSError) as exc:
                errors.append(f"unreadable {name}: {exc}")
    if not config:
        errors.append("no config_resolved.yaml or .hydra/config.yaml")
    metrics = None
    mp = d / "metrics.json"
    if mp.is_file():
        try:
            loaded = json.loads(mp.read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                metrics = loaded
            else:
                errors.append("metrics.json is not an object")
        except (json.JSONDecodeError, OSError) as exc:
            errors.append(f"unreadable metrics.json: {exc}")
    else:
        errors.append("no metrics.json (failed or unfinished run)")
    return Run(path=d, config=config, metrics=metrics, error="; ".join(errors) or None)


def _is_run_dir(d: Path) -> bool:
    return (d / "metrics.json").is_file() or (d / ".hydra").is_dir()


def find_runs(roots: str | Path | Iterable[str | Path]) -> list[Run]:
    """Every run under ``roots`` (sorted by path); failed runs are included with ``metrics=None``.

    A run is a directory with ``metrics.json`` or ``.hydra/``; the search does not descend into
    runs, nor into ``checkpoints``/``csv`` folders.
    """
    if isinstance(roots, (str, Path)):
        roots = [roots]
    found: dict[Path, Run] = {}
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: no such directory")
        if _is_run_dir(root):
            found[root.resolve()] = _load_run(root)
            continue
        for dirpath, dirnames, _files in os.walk(root):
            here = Path(dirpath)
            keep = []
            for name in sorted(dirnames):
                sub = here / name
                if name in _RUN_SKIP_DIRS:
                    continue
                if _is_run_dir(sub):
                    found[sub.resolve()] = _load_run(sub)
                else:
                    keep.append(name)
            dirnames[:] = keep
    return [found[k] for k in sorted(found, key=_natural_key)]


def _natural_key(p: Path) -> list[Any]:
    return [int(tok) if tok.isdigit() else tok for tok in re.split(r"(\d+)", str(p))]

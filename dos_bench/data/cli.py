"""``dos-data``: download the external datasets and show what is present locally.

Usage::

    dos-data list [OVERRIDES...]
    dos-data download DATASET [DATASET...] [OVERRIDES...] [--no-progress] [-v]

Dataset configs are read by composing the project's Hydra config (``conf/train.yaml`` with
``dataset=<name>``), so interpolations such as ``${paths.data_dir}`` resolve and any Hydra
override can follow the names, e.g. ``dos-data download jarvis_edos paths.data_dir=/scratch``
or ``progress=false``. Exit code 0 on success, 2 with a one-line error otherwise.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from dos_bench.config import CONF_DIR as PACKAGED_CONF_DIR
from dos_bench.data.download import (
    dataset_entries,
    download_dataset,
    part_path,
    required_env,
    unpack_marker,
)
from dos_bench.io import ConfigError, DataError

log = logging.getLogger(__name__)

__all__ = ["CONF_DIR", "PRIMARY_CONFIG", "compose_dataset", "known_datasets", "main"]

CONF_DIR = PACKAGED_CONF_DIR
PRIMARY_CONFIG = "train"
EXIT_ERROR = 2


def known_datasets(conf_dir: Path = CONF_DIR) -> list[str]:
    """Names of the dataset configs (``conf/dataset/**/*.yaml``, without the suffix).

    Args:
        conf_dir: the Hydra config directory.
    """
    ds_dir = Path(conf_dir) / "dataset"
    return sorted(p.relative_to(ds_dir).with_suffix("").as_posix() for p in ds_dir.rglob("*.yaml"))


def compose_dataset(
    name: str, overrides: Sequence[str] = (), conf_dir: Path = CONF_DIR
) -> DictConfig:
    """Compose the primary config with ``dataset=<name>`` and the given Hydra overrides.

    Args:
        name: dataset config name (``conf/dataset/<name>.yaml``).
        overrides: Hydra overrides such as ``paths.data_dir=/scratch/data``.
        conf_dir: the Hydra config directory.

    Returns:
        The composed config (``cfg.dataset``, ``cfg.paths.data_dir``, ``cfg.progress`` ...).

    Raises:
        ConfigError: unknown dataset (listing the known ones) or a composition error.
    """
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    known = known_datasets(conf_dir)
    if name not in known:
        raise ConfigError(f"unknown dataset {name!r}; known datasets: {', '.join(known)}")
    try:
        with initialize_config_dir(config_dir=str(Path(conf_dir).resolve()), version_base="1.3"):
            return compose(config_name=PRIMARY_CONFIG, overrides=[f"dataset={name}", *overrides])
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(f"cannot compose dataset {name!r}: {exc}") from exc


def _data_dir(cfg: DictConfig) -> Path:
    from omegaconf.errors import OmegaConfBaseException

    try:
        value = cfg.paths.data_dir
    except OmegaConfBaseException as exc:
        raise ConfigError(f"paths.data_dir: cannot resolve it: {exc}") from exc
    if not value:
        raise ConfigError("paths.data_dir: not set")
    return Path(str(value)).expanduser().resolve()


def _split_items(items: Sequence[str]) -> tuple[list[str], list[str]]:
    """Separate dataset names from Hydra overrides (``key=value``, ``+key=v``, ``~key``)."""
    names, overrides = [], []
    for item in items:
        (overrides if "=" in item or item.startswith(("~", "+")) else names).append(item)
    return names, overrides


def _cmd_download(items: Sequence[str], no_progress: bool, conf_dir: Path) -> int:
    names, overrides = _split_items(items)
    if not names:
        raise ConfigError(
            f"name at least one dataset to download; known: {', '.join(known_datasets(conf_dir))}"
        )
    failed = 0
    for name in names:
        try:
            cfg = compose_dataset(name, overrides, conf_dir)
            data_dir = _data_dir(cfg)
            progress = bool(cfg.get("progress", True)) and not no_progress
            if dataset_entries(cfg.dataset) is None and not required_env(cfg.dataset, name):
                print(f"{name}: generated locally on first use, nothing to download")
                continue
            paths = download_dataset(cfg.dataset, data_dir, progress=progress)
        except (DataError, ConfigError) as exc:
            _error(exc)
            failed += 1
            continue
        print(f"{name}: {len(paths)} file(s) ready under {data_dir}")
        for path in paths:
            print(f"  {path}")
    return EXIT_ERROR if failed else 0


def _cmd_list(overrides: Sequence[str], conf_dir: Path) -> int:
    names, overrides = _split_items(overrides)
    if names:
        raise ConfigError(f"`list` takes only Hydra overrides (key=value), got {names}")
    failed = 0
    for name in known_datasets(conf_dir):
        try:
            cfg = compose_dataset(name, overrides, conf_dir)
            data_dir = _data_dir(cfg)
            entries = dataset_entries(cfg.dataset)
            env_vars = required_env(cfg.dataset, name)
        except (DataError, ConfigError) as exc:
            print(f"{name}: cannot read config: {_one_line(exc)}")
            failed += 1
            continue
        if entries is None and not env_vars:
            print(f"{name}: generated locally on first use (nothing to download)")
            continue
        needs = "".join(
            f"; needs ${var} ({'set' if _env_set(var) else 'NOT set'})" for var in env_vars
        )
        print(f"{name}: {len(entries or [])} download(s) into {data_dir}{needs}")
        for entry in entries or []:
            dest = data_dir / entry.path
            part = part_path(dest)
            if dest.is_file():
                status = "present"
                if entry.unpack and unpack_marker(dest, dest.parent).exists():
                    status = "present, unpacked"
            elif part.exists():
                status = f"partial ({part.stat().st_size} bytes; rerun download to resume)"
            else:
                status = "missing"
            if entry.record is not None:
                pin = "" if entry.sha256 else " [checked against the record's checksum]"
            else:
                pin = "" if entry.sha256 else " [sha256 not pinned]"
            print(f"  {status:<9} {entry.path}  <- {entry.source}{pin}")
    return EXIT_ERROR if failed else 0


def _env_set(var: str) -> bool:
    return bool(os.environ.get(var))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split("\n")).strip() or type(exc).__name__


def _error(exc: BaseException) -> None:
    print(f"dos-data: error: {_one_line(exc)}", file=sys.stderr)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dos-data",
        description=(
            "Download the published DOS datasets into paths.data_dir\n"
            "($DOS_BENCH_DATA_DIR, default ./data) and list them. Training never downloads.\n\n"
            "examples:\n"
            "  dos-data list                                 # every dataset and its local status\n"
            "  dos-data download jarvis_edos phonon_tut      # fetch, verify and unpack\n"
            "  MP_API_KEY=... dos-data download mp_edos_201  # build from the Materials Project"
        ),
        epilog="Hydra overrides (key=value) may follow, e.g. paths.data_dir=/scratch/data.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every step")
    sub = parser.add_subparsers(dest="command", required=True)
    dl = sub.add_parser("download", help="download one or more datasets")
    dl.add_argument("items", nargs="+", metavar="DATASET|OVERRIDE")
    dl.add_argument("--no-progress", action="store_true", help="no progress bars")
    dl.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS)
    ls = sub.add_parser("list", help="datasets, their download entries and local status")
    ls.add_argument("items", nargs="*", metavar="OVERRIDE")
    ls.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None, conf_dir: str | Path | None = None) -> int:
    """Entry point of ``dos-data``.

    Args:
        argv: command-line arguments without the program name (default: ``sys.argv[1:]``).
        conf_dir: Hydra config directory (default: the repository's ``conf/``); for tests.

    Returns:
        The exit code: 0 on success, 2 on a data or configuration error.
    """
    parser = _parser()
    try:
        args, extra = parser.parse_known_args(argv)
    except SystemExit as exc:  # --help or a usage error (argparse printed it)
        return int(exc.code or 0)
    stray = [x for x in extra if x.startswith("-")]
    if stray:
        print(f"dos-data: error: unrecognized arguments: {' '.join(stray)}", file=sys.stderr)
        return EXIT_ERROR
    items = [*args.items, *extra]
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="dos-data: %(levelname)s: %(message)s",
    )
    conf = Path(conf_dir) if conf_dir is not None else CONF_DIR
    try:
        if args.command == "download":
            return _cmd_download(items, args.no_progress, conf)
        return _cmd_list(items, conf)
    except (DataError, ConfigError) as exc:
        _error(exc)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(
            "dos-data: interrupted; partial downloads are kept (*.part), rerun to resume",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""Where the packaged configuration lives.

The Hydra config groups (``dos_bench/conf/``, also reachable as ``conf/`` at the top of a source
checkout) and the published table specs (``dos_bench/published/``) ship inside the package, so
every console script finds them through the installed package, from any working directory and
from a non-editable install of the wheel alike.
"""

from __future__ import annotations

from pathlib import Path

#: the package directory (``site-packages/dos_bench`` in an installed wheel)
PACKAGE_DIR = Path(__file__).resolve().parent
#: the Hydra config directory (``train.yaml``, ``predict.yaml`` and every config group)
CONF_DIR = PACKAGE_DIR / "conf"
#: the published table specs read by ``dos-tables``
SPEC_DIR = PACKAGE_DIR / "published"

__all__ = ["CONF_DIR", "PACKAGE_DIR", "SPEC_DIR"]


# --------------------------------------------------------------------------- --help resolvers
#: groups of the config tree that are not chosen on the `dos-train` command line
_NOT_TRAIN_GROUPS = {"hydra", "hparams_search"}


def _primary_defaults(primary: str) -> dict[str, str]:
    """``{group: default option}`` from a primary config's defaults list."""
    import yaml

    data = yaml.safe_load((CONF_DIR / f"{primary}.yaml").read_text()) or {}
    out: dict[str, str] = {}
    for item in data.get("defaults", []):
        if isinstance(item, dict):
            for k, v in item.items():
                out[str(k).split(" ")[-1].lstrip("/")] = str(v)
    return out


def group_options(group: str) -> list[str]:
    """The options of a config group (``model/head`` -> its YAML names), sorted."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def help_groups(primary: str) -> str:
    """The config groups a command takes and their options, one line each (``--help``).

    ``train`` lists every group of the tree except Hydra's and ``hparams_search`` (which
    ``dos-hpsearch`` reads), nested groups such as ``model/encoder`` included; other primaries
    list the groups of their defaults list. The default option is starred.
    """
    defaults = _primary_defaults(primary)
    if primary == "train":
        groups = sorted(
            p.relative_to(CONF_DIR).as_posix()
            for p in CONF_DIR.rglob("*")
            if p.is_dir()
            and any(p.glob("*.yaml"))
            and p.relative_to(CONF_DIR).parts[0] not in _NOT_TRAIN_GROUPS
        )
    else:
        groups = sorted(
            g for g in defaults if (CONF_DIR / g).is_dir() and g.split("/")[0] != "hydra"
        )
    width = max((len(g) for g in groups), default=0)
    lines = []
    for g in groups:
        opts = [f"{o}*" if defaults.get(g) == o else o for o in group_options(g)]
        lines.append(f"{g:<{width}}  {', '.join(opts)}")
    return "\n".join(lines)


def _register_help_resolvers() -> None:
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("dos_help_groups", help_groups, replace=True)
    OmegaConf.register_new_resolver(
        "dos_help_options", lambda g: ", ".join(group_options(g)), replace=True
    )


_register_help_resolvers()

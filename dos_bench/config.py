"""The packaged configuration: where it lives, its resolvers, and how a node is built.

* Paths: the Hydra config groups (``dos_bench/conf/``, also reachable as ``conf/`` at the top of a
  source checkout) and the published table specs (``dos_bench/published/``) ship inside the
  package, so every console script finds them through the installed package, from any working
  directory and from a non-editable install of the wheel alike.
* Resolvers: every OmegaConf resolver the configs use (``${path_safe:...}``,
  ``${wandb_offline:}``, and ``${dos_help_groups:...}``/``${dos_help_options:...}`` for
  ``--help``) is registered here, once, when this module is imported. None of them reads run
  state: sizes that only the data knows (the atom-feature size, the output length) are passed by
  the code that builds the model (:func:`dos_bench.models.model.build_model`), never resolved.
* :func:`build`: ``hydra.utils.instantiate`` that surfaces our own errors unwrapped.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from dos_bench.io import ConfigError, DataError

#: the package directory (``site-packages/dos_bench`` in an installed wheel)
PACKAGE_DIR = Path(__file__).resolve().parent
#: the Hydra config directory (``train.yaml``, ``predict.yaml`` and every config group)
CONF_DIR = PACKAGE_DIR / "conf"
#: the published table specs read by ``dos-tables``
SPEC_DIR = PACKAGE_DIR / "published"

__all__ = [
    "CONF_DIR",
    "MAX_JOB_DIRNAME",
    "PACKAGE_DIR",
    "SPEC_DIR",
    "build",
    "path_safe",
    "register_resolvers",
    "wandb_offline",
]


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


# --------------------------------------------------------------------------- run resolvers
def wandb_offline() -> bool:
    """Offline unless an API key is configured (environment or ~/.netrc) or WANDB_MODE=online."""
    if os.environ.get("WANDB_MODE") in ("online", "offline"):
        return os.environ["WANDB_MODE"] == "offline"
    if os.environ.get("WANDB_API_KEY"):
        return False
    netrc = Path(os.path.expanduser("~/.netrc"))
    return not (netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore"))


#: longest job directory name built from the overrides (file systems allow 255 bytes)
MAX_JOB_DIRNAME = 120


def path_safe(text: str) -> str:
    """A sweep job's override string as one directory name: config-group overrides such as
    ``model/head=rnn`` would otherwise nest the job directory (``/`` becomes ``.``), and a long
    override list (a table preset passes 16) is cut to :data:`MAX_JOB_DIRNAME` characters and
    ended by a hash of the whole string, so names stay unique and within the file system's limit
    (the full overrides are in the job's ``.hydra/overrides.yaml``)."""
    name = str(text).replace("/", ".")
    if len(name.encode()) <= MAX_JOB_DIRNAME:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:10]
    head = name.encode()[: MAX_JOB_DIRNAME - len(digest) - 1].decode(errors="ignore")
    return f"{head}~{digest}"


def register_resolvers() -> None:
    """Register every resolver the packaged configs use (idempotent; runs at import)."""
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("dos_help_groups", help_groups, replace=True)
    OmegaConf.register_new_resolver(
        "dos_help_options", lambda g: ", ".join(group_options(g)), replace=True
    )
    OmegaConf.register_new_resolver("wandb_offline", wandb_offline, replace=True)
    OmegaConf.register_new_resolver("path_safe", path_safe, replace=True)


register_resolvers()


# --------------------------------------------------------------------------- building
def build(node: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` that surfaces our own errors unwrapped.

    Hydra wraps exceptions raised by a ``_target_`` in ``InstantiationException``; a
    :class:`ConfigError` or :class:`DataError` already names the key or record, so it is re-raised
    as it is, giving the user one clear message.
    """
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(node, **kwargs)
    except InstantiationException as exc:
        cause = exc.__cause__
        while isinstance(cause, InstantiationException):
            cause = cause.__cause__
        if isinstance(cause, (ConfigError, DataError)):
            raise cause from None
        raise


# --------------------------------------------------------------------------- composition check
#: command-line flags after which Hydra does not compose a job config (help, shell completion)
_NO_COMPOSE_FLAGS = {"-h", "--help", "--hydra-help", "--info", "-i", "--shell-completion", "-sc"}


def _one_line(message: str) -> str:
    """Hydra's multi-line composition message as one line (option lists joined by commas)."""
    parts: list[str] = []
    options: list[str] = []
    message = str(message).split("\nConfig search path")[0]  # where Hydra looked: not actionable
    for raw in message.splitlines():
        line = raw.strip()
        if not line:
            continue
        if raw.startswith(("\t", "    ")) and parts and parts[-1].endswith(":"):
            options.append(line)
            continue
        if options:
            parts[-1] += " " + ", ".join(options)
            options = []
        parts.append(line)
    if options:
        parts[-1] += " " + ", ".join(options)
    return "; ".join(parts)


def composition_error(primary: str, argv: list[str]) -> str | None:
    """Why the command line cannot compose ``primary`` (an unknown group option, an unknown key,
    a malformed override), as one line; ``None`` if it composes or the question does not apply.

    A sweep (``-m``) is checked with the first value of each swept key. Hydra's own keys
    (``hydra.*``) are left to Hydra. Used by the console scripts before Hydra starts, so such a
    mistake costs one line and exit code 2, like every other bad config value.
    """
    if any(a in _NO_COMPOSE_FLAGS for a in argv):
        return None
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    tokens = [a for a in argv if "=" in a and not a.startswith("-")]
    try:
        overrides = OverridesParser.create().parse_overrides(tokens)
    except HydraException as exc:
        return _one_line(str(exc))
    base: list[str] = []
    swept: list[tuple[int, str, list[str]]] = []  # (position in base, key, every value)
    for ov in overrides:
        key = ov.input_line.split("=", 1)[0]
        if key.lstrip("+~").startswith("hydra"):
            continue
        if ov.is_sweep_override():
            try:
                values = list(ov.sweep_string_iterator())
            except Exception:  # a sweep form we cannot expand here: leave it to Hydra
                return None
            swept.append((len(base), key, values))
            base.append(f"{key}={values[0]}")
        else:
            base.append(ov.input_line)
    if GlobalHydra.instance().is_initialized():
        return None
    # the first value of every sweep, then each other value of a swept config group in turn
    trials = [base]
    for pos, key, values in swept:
        if (CONF_DIR / key.lstrip("+~")).is_dir():
            trials += [[*base[:pos], f"{key}={v}", *base[pos + 1 :]] for v in values[1:]]
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            for overrides_ in trials[:50]:
                compose(config_name=primary, overrides=overrides_)
    except (HydraException, OmegaConfBaseException) as exc:
        return _one_line(str(exc))
    return None

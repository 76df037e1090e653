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

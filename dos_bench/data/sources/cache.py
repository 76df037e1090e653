"""The processed-record cache every source shares: one ``.npz`` per option set, written atomically.

:class:`RecordCache` is the one implementation of "build the records once, then reuse the file"
for the published-data sources (:class:`~dos_bench.data.sources.base.CachedSource`, which builds
from raw files) and the generated toy sets (:mod:`dos_bench.data.sources.toy`). Where the file
lives and what its hash covers is the subclass's business; reading, writing and the read-only
data directory are handled here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dos_bench.data.records import RecordSet
from dos_bench.io import memory_cache, save_cache

log = logging.getLogger(__name__)

__all__ = ["RecordCache"]


class RecordCache:
    """A :class:`RecordSet` built once and kept as one ``.npz`` file.

    :meth:`_cached` returns, in this order, the copy kept in memory for a read-only data
    directory (:func:`~dos_bench.io.memory_cache`, same process), the file at ``path`` (read back,
    then :meth:`_reused`), or ``make()``: its records are written to ``path`` atomically
    (:func:`~dos_bench.io.save_cache`, which keeps them in memory instead, with one warning, when
    the directory is read-only) and reported by :meth:`_made`.

    Subclasses set :attr:`name` and :attr:`kind` and implement :meth:`cache_key` (everything
    that shapes the records) and ``load(data_dir) -> RecordSet`` on top of :meth:`_cached`.
    """

    name: str = "records"
    kind: str = "edos"

    def cache_key(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _cached(self, path: Path, make: Callable[[], RecordSet]) -> RecordSet:
        """The records cached at ``path``, or ``make()`` written there."""
        if (kept := memory_cache(path)) is not None:  # read-only data directory, same process
            return kept
        if path.exists():
            rs = RecordSet.load(path)
            self._reused(rs, path)
            return rs
        t0 = time.perf_counter()
        rs = make()
        saved = save_cache(rs, path)  # a read-only data directory: kept in memory, one warning
        self._made(rs, path, saved, time.perf_counter() - t0)
        return rs

    def _reused(self, rs: RecordSet, path: Path) -> None:
        """Check and report records read back from ``path`` (raise if they do not fit)."""
        log.info("%s: reusing cached %s", self.name, path)

    def _made(self, rs: RecordSet, path: Path, saved: bool, seconds: float) -> None:
        """Report records just built (``saved``: written to ``path``, else kept in memory)."""
        log.info("%s: %d records built in %.1f s", self.name, len(rs), seconds)

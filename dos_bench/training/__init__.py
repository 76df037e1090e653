"""Training: the LightningModule, its callbacks, resume, multi-device launch and the run files.

Layers point down only: this package imports :mod:`dos_bench.data`, :mod:`dos_bench.models` and
the shared helpers (:mod:`dos_bench.config`, :mod:`dos_bench.io`, :mod:`dos_bench.metrics`); the
entry points (:mod:`dos_bench.train`, :mod:`dos_bench.predict`, :mod:`dos_bench.hpsearch`) sit on
top of it, and nothing here imports them.

* :mod:`~dos_bench.training.module`: :class:`~dos_bench.training.module.DOSLitModule`.
* :mod:`~dos_bench.training.callbacks`: epoch timer, epoch log lines, resume state.
* :mod:`~dos_bench.training.builders`: the module, loggers and callbacks built from the config.
* :mod:`~dos_bench.training.resume`: checkpoint checks, the resumable CSV logger, the run lock.
* :mod:`~dos_bench.training.distributed`: launch planning, elastic launch, gathering predictions.
* :mod:`~dos_bench.training.allocator`: the CPU memory-allocator policy.
* :mod:`~dos_bench.training.results`: test, ``metrics.json``, ``predictions.npz``, the summary.
"""

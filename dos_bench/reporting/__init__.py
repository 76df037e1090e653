"""Reporting: paper tables, figures and the JARVIS-Leaderboard submission, from the files runs
wrote (never from live training state).

* :mod:`~dos_bench.reporting.spec` — table specs (``dos_bench/published/<name>.yaml``): format,
  loading, validation; :mod:`~dos_bench.reporting.runs` — finding runs in multirun directories;
  :mod:`~dos_bench.reporting.cells` — matching runs to cells, mean (std), improvement rows;
  :mod:`~dos_bench.reporting.render` — markdown / CSV / LaTeX; :mod:`~dos_bench.reporting.cli`
  — the ``dos-tables`` command.
* Figures: :mod:`~dos_bench.reporting.units` (axis labels and units, :func:`spectrum_units`),
  :mod:`~dos_bench.reporting.plotting` (PNG writer, :func:`figure_info`),
  :mod:`~dos_bench.reporting.spectra`, :mod:`~dos_bench.reporting.histograms`,
  :mod:`~dos_bench.reporting.periodic` (per run / per prediction) and
  :mod:`~dos_bench.reporting.figures` (per table: what ``dos-tables --plots`` draws, radar and
  data-size charts).
* :mod:`~dos_bench.reporting.leaderboard` — the JARVIS-Leaderboard submission (CSV.zip,
  metadata.json) and its score.

Reporting may import :mod:`dos_bench.data`, :mod:`dos_bench.metrics`, :mod:`dos_bench.physics`,
:mod:`dos_bench.io` and :mod:`dos_bench.config`, never training or the entry points. The
submodules are imported on demand (``dos-train`` only needs the run figures).
"""

"""``dos-tables``: turn a multirun directory into a paper table, beside the published numbers.

``dos-tables <multirun dir> [<dir> ...] [--format markdown|csv|latex]
[--table <spec name or path>] [--plots <outdir>] [--output <file>] [--check] [--list]``

The runs (:mod:`~dos_bench.reporting.runs`) name their table by the ``table`` config key (set by
every ``conf/experiment`` preset), unless ``--table`` names one
(:mod:`~dos_bench.reporting.spec`); runs without one get an ad-hoc sweep table (one row per
model). Cells are built by :mod:`~dos_bench.reporting.cells`, printed by
:mod:`~dos_bench.reporting.render`; ``--plots`` draws the figures
(:mod:`~dos_bench.reporting.figures`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from dos_bench.io import ConfigError, DataError, atomic_write, ensure_writable_dir
from dos_bench.reporting.cells import build_table
from dos_bench.reporting.figures import draw_figures
from dos_bench.reporting.render import render
from dos_bench.reporting.runs import Run, find_runs
from dos_bench.reporting.spec import auto_spec, available_specs, load_spec

__all__ = ["main"]


def _tables_of(runs: Sequence[Run]) -> list[str]:
    names = {str(r.get("table")) for r in runs if r.get("table") not in (None, "")}
    return sorted(names)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="dos-tables",
        description=(
            "Build paper tables (mean (std) over seeds, beside the published values) from one or\n"
            "more multirun directories; a sweep without a table preset gets one row per model.\n\n"
            "examples:\n"
            "  dos-tables outputs/multiruns/mat2spec_table1/<date>       # the paper table\n"
            "  dos-tables <sweep> --check --plots figs/                   # fail on empty cells\n"
            "  dos-tables <sweep> --format latex --output table.tex       # for the manuscript"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("dirs", nargs="*", type=Path, help="multirun (or run) directories")
    parser.add_argument("--format", choices=("markdown", "csv", "latex"), default="markdown")
    parser.add_argument(
        "--table",
        help="table spec name (dos_bench/published/<name>.yaml) or "
        "path; default: the runs' `table` config key",
    )
    parser.add_argument(
        "--plots",
        type=Path,
        metavar="OUTDIR",
        help="also draw the table's figures (PNG) into OUTDIR",
    )
    parser.add_argument("--output", type=Path, help="write the table(s) to this file")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 unless every applicable cell has a number"
    )
    parser.add_argument("--list", action="store_true", help="list the bundled table specs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    if args.list:
        for name in available_specs():
            spec = load_spec(name)
            print(f"{name:24s} {spec.title}")
        return 0
    if not args.dirs:
        parser.error("give at least one multirun directory (or --list)")
    try:
        runs = find_runs(args.dirs)
        if not runs:
            raise ConfigError(
                f"no runs (directories with metrics.json or .hydra/) under "
                f"{[str(d) for d in args.dirs]}"
            )
        if args.table:
            jobs = [(load_spec(args.table), runs)]
        else:
            names = _tables_of(runs)
            jobs = [(load_spec(n), [r for r in runs if str(r.get("table")) == n]) for n in names]
            untabled = [r for r in runs if r.get("table") in (None, "None", "")]
            if untabled:
                # an ad-hoc sweep (no preset): one row per model, one column per test metric
                jobs.append((load_spec(auto_spec(untabled)), untabled))
    except (ConfigError, FileNotFoundError) as exc:
        print(f"dos-tables: {exc}", file=sys.stderr)
        return 2

    if args.plots:
        try:
            ensure_writable_dir(args.plots, key="--plots")
        except (ConfigError, OSError) as exc:
            print(f"dos-tables: {exc}", file=sys.stderr)
            return 2
    texts, incomplete = [], []
    for spec, spec_runs in jobs:
        result = build_table(spec, spec_runs)
        texts.append(render(result, args.format))
        incomplete += [(spec.name, r, c, cell) for r, c, cell in result.incomplete()]
        if args.plots:
            # what was written (or why not) goes to stderr: stdout may be the table itself
            report = draw_figures(result, args.plots)
            print(f"dos-tables: figures of table {spec.name} -> {args.plots}", file=sys.stderr)
            for line in report.lines():
                print(f"  {line}", file=sys.stderr)
    text = "\n".join(texts)
    if args.output:
        try:
            with atomic_write(args.output) as tmp:
                tmp.write_text(text, encoding="utf-8")
        except DataError as exc:  # unwritable path, full disk: one line naming the file
            print(f"dos-tables: --output {args.output}: {exc}", file=sys.stderr)
            return 2
    else:
        sys.stdout.write(text)
    if args.check and incomplete:
        for name, r, c, cell in incomplete:
            print(
                f"dos-tables --check: {name} [{r}, {c}] has no number ({cell.status}"
                f"{', metric ' + cell.metric if cell.status == 'no_value' else ''})",
                file=sys.stderr,
            )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

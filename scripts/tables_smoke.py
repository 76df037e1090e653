"""Scaled-down smoke of every experiment preset: real Hydra multiruns, then ``dos-tables``.

Usage::

    python scripts/tables_smoke.py                    # every preset (make tables-smoke)
    python scripts/tables_smoke.py --only mat2spec_table1,xtal2dos_table3
    python scripts/tables_smoke.py --list

For each preset in :data:`PLAN` this runs ``python -m dos_bench.train -m experiment=<preset>``
once per *group* (a subset of the preset's sweep that shares one toy dataset), with overrides
that swap the real data for the bundled toy data and shrink the run:

* eDOS data -> ``toy_edos`` (on the preset's grid: 300 points for ALIGNN-DOS, 201 for
  DOSTransformer, the 128 band-edge bins for Mat2Spec/Xtal2DoS); phDOS -> ``toy_phdos``;
  published index-file splits -> ``split=random``; ``dataset.source.n_materials=80``;
* one epoch of one training batch and one validation batch (``trainer.max_epochs=1``,
  ``limit_train_batches=1``, ``limit_val_batches=1``, no sanity check), the full (tiny) test set;
* ``data.batch_size=4`` (not 16: the paper-size sequence decoders and E3NN dominate the budget on
  2 CPU cores), two seeds (``seed=0,1``) so every cell shows mean (std);
* ALIGNN only: ``model.encoder.alignn_layers=1 gcn_layers=1 hidden=64`` (all its rows share the
  encoder, so one override shrinks them all; paper size costs ~30 s per batch on 2 busy cores).
  Every other model keeps its paper size.
* every job single-threaded (``num_threads=1``) and two multiruns at a time (``--jobs 2``, one
  per core), the longest first.

Outputs go to ``outputs/tables_smoke/<preset>/<group>/<job>`` (a preset's folder is wiped
first). Then ``dos-tables --check --plots`` builds the preset's table from that folder and fails
if a cell has no number. Presets whose jobs are a subset of another preset's jobs
(:data:`REUSE`: DOSTransformer Tables 5 and 6 of Table 1, Xtal2DoS Table 4 of Table 5; checked
by composing both presets for every sweep combination) get their table from those runs instead
of training the same configurations again (``--no-reuse`` trains them separately).

Exit status: 0 when every multirun finished and every table is complete, else 1.
``--allow-missing derived.,test_groups.`` tolerates cells whose metric is simply absent from
metrics.json (quantities another component has not written yet); failed runs never pass.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from dos_bench.config import CONF_DIR  # noqa: E402

OUT = Path("outputs/tables_smoke")

TOY_EDOS = ["dataset=toy_edos"]  # 300 points, -5 ... 9.95 eV (the ALIGNN-DOS grid)
TOY_EDOS_201 = [  # the DOSTransformer grid: -5 ... 5 eV, 0.05 eV
    "dataset=toy_edos",
    "dataset.recipe.start=-5.0",
    "dataset.recipe.step=0.05",
    "dataset.recipe.n_points=201",
]
TOY_EDOS_128 = [  # the Mat2Spec/Xtal2DoS bin centres -4 + 0.0625 (k + 1/2)
    "dataset=toy_edos",
    "dataset.recipe.start=-3.96875",
    "dataset.recipe.step=0.0625",
    "dataset.recipe.n_points=128",
]
TOY_PHDOS = ["dataset=toy_phdos", "split=random"]
SHRINK_ALIGNN = [
    "model.encoder.alignn_layers=1",
    "model.encoder.gcn_layers=1",
    "model.encoder.hidden=64",
    "model.head.hidden=64",
]


@dataclass
class Group:
    """One multirun: a subset of the preset's sweep that runs on one toy dataset."""

    name: str
    overrides: list[str] = field(default_factory=list)
    cost: float = 1.0  # relative wall time (measured), only to start the longest groups first


#: preset -> multiruns (a group's sweep overrides replace the preset's for the same key)
PLAN: dict[str, list[Group]] = {
    "alignn_dos_table1": [
        Group("d_alignn", ["method=d_alignn", *TOY_EDOS, *SHRINK_ALIGNN], cost=14),
        Group(
            "ae_alignn",
            [
                "method=ae_alignn_8,ae_alignn_12,ae_alignn_16,ae_alignn_20",
                *TOY_EDOS,
                *SHRINK_ALIGNN,
                # toy spectra are in states/eV (not valence-normalised JARVIS values in [0, 1]):
                # the sigmoid autoencoder needs a [0, 1] inner representation. `++`: Hydra first
                # composes the multirun without its sweep, i.e. with the default row D-ALIGNN,
                # whose target_repr (raw) has no `inner`
                "++target_repr.inner._target_=dos_bench.data.transforms.MaxNorm",
            ],
            cost=19,
        ),
    ],
    "dostransformer_table1": [
        Group("phonon", ["setting=dost_phonon", *TOY_PHDOS], cost=101),
        Group("electron", ["setting=dost_eid,dost_s1,dost_s2", *TOY_EDOS_201], cost=302),
    ],
    "dostransformer_table5": [Group("electron", ["setting=dost_s1,dost_s2", *TOY_EDOS_201])],
    "dostransformer_table6": [
        Group("phonon", ["setting=dost_phonon", *TOY_PHDOS]),
        Group("electron", ["setting=dost_eid", *TOY_EDOS_201]),
    ],
    "xtal2dos_table1": [Group("phdos", TOY_PHDOS, cost=111)],
    "xtal2dos_table2": [Group("edos", TOY_EDOS_128, cost=190)],
    "xtal2dos_table3": [Group("phdos", TOY_PHDOS, cost=128)],
    "xtal2dos_table4": [Group("edos", TOY_EDOS_128, cost=60)],
    "xtal2dos_table5": [Group("edos", TOY_EDOS_128, cost=264)],
    "mat2spec_table1": [Group("phdos", TOY_PHDOS, cost=145)],
    "mat2spec_table2": [Group("edos", TOY_EDOS_128, cost=143)],
    "mat2spec_datasize": [Group("edos", TOY_EDOS_128, cost=112)],
    "mat2spec_ablation": [Group("edos", TOY_EDOS_128, cost=41)],
    "jarvis_leaderboard_phdos": [  # the leaderboard's 66 points, -300 ... 1000 cm^-1
        Group(
            "phdos",
            [
                *TOY_PHDOS,
                "dataset.recipe.start=-300.0",
                "dataset.recipe.n_points=66",
                *SHRINK_ALIGNN,
            ],
            cost=14,
        )
    ],
}

#: presets whose sweep is a subset of another preset's: their table is built from its runs
REUSE: dict[str, str] = {
    "dostransformer_table5": "dostransformer_table1",
    "dostransformer_table6": "dostransformer_table1",
    "xtal2dos_table4": "xtal2dos_table5",
}


def common_overrides(data_dir: Path, seeds: str, batch_size: int) -> list[str]:
    return [
        "progress=false",
        "plots=false",
        "num_threads=1",  # tiny batches: threads cost more than they give; groups run in parallel
        f"paths.data_dir={data_dir}",
        "dataset.source.n_materials=80",
        f"data.batch_size={batch_size}",
        "trainer.max_epochs=1",
        "++trainer.limit_train_batches=1",
        "++trainer.limit_val_batches=1",
        "++trainer.num_sanity_val_steps=0",
        "++trainer.log_every_n_steps=1",
        f"seed={seeds}",
        "hydra.sweep.subdir=${hydra.job.num}",
    ]


# ----------------------------------------------------------------------------- sweep checks
def _compose(overrides: list[str], hydra: bool = False) -> Any:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():  # e.g. inside a test that composes already
        return compose("train", overrides=overrides, return_hydra_config=hydra)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=hydra)


def _sweep(preset: str) -> dict[str, list[str]]:
    """The preset's sweep as {key: values} (Hydra compose API + override parser)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    cfg = _compose([f"experiment={preset}"], hydra=True)
    parser = OverridesParser.create()
    out = {}
    for k, v in (cfg.hydra.sweeper.params or {}).items():
        ov = parser.parse_override(f"{k}={v}")
        sweep = ov.is_sweep_override()
        out[str(k)] = list(ov.sweep_string_iterator()) if sweep else [ov.get_value_element_as_str()]
    return out


def check_reuse(preset: str, source: str, max_combos: int | None = None) -> str | None:
    """``None`` if every job of ``preset`` is also a job of ``source``, else why not.

    The sweep of ``preset`` must be a subset of the sweep of ``source``, and for each (non-seed)
    combination the two composed configurations must be identical apart from ``table`` and
    ``experiment_name`` (checked for the first ``max_combos`` combinations, all by default).
    """
    from omegaconf import OmegaConf

    a, b = _sweep(preset), _sweep(source)
    for k, vals in a.items():
        if k not in b:
            return f"{preset} sweeps {k}, {source} does not"
        if not set(vals) <= set(b[k]):
            return f"{preset} sweeps {k}={sorted(set(vals) - set(b[k]))} that {source} does not"
    keys = sorted(k for k in a if k not in ("seed", "split_seed", "data_seed"))
    combos = list(itertools.product(*(a[k] for k in keys)))[:max_combos]
    for combo in combos:
        ovs = [f"{k}={v}" for k, v in zip(keys, combo, strict=True)]
        cfgs = []
        for name in (preset, source):
            c = OmegaConf.to_container(_compose([f"experiment={name}", *ovs]), resolve=False)
            c.pop("table", None)
            c.pop("experiment_name", None)
            cfgs.append(c)
        if cfgs[0] != cfgs[1]:
            diff = sorted(
                k for k in set(cfgs[0]) | set(cfgs[1]) if cfgs[0].get(k) != cfgs[1].get(k)
            )
            return f"{preset} and {source} differ at {ovs} in {diff}"
    return None


# ----------------------------------------------------------------------------- running
def run_group(preset: str, group: Group, base: list[str], extra: list[str], log: Path) -> float:
    """One real Hydra multirun; returns its wall time; raises CalledProcessError on failure."""
    sweep_dir = OUT / preset / group.name
    cmd = [
        sys.executable,
        "-m",
        "dos_bench.train",
        "-m",
        f"experiment={preset}",
        f"hydra.sweep.dir={sweep_dir}",
        *base,
        *group.overrides,
        *extra,
    ]
    t0 = time.perf_counter()
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as fh:
        fh.write(" ".join(cmd) + "\n\n")
        fh.flush()
        subprocess.run(
            cmd,
            cwd=ROOT,
            stdout=fh,
            stderr=subprocess.STDOUT,
            check=True,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
    return time.perf_counter() - t0


def build(preset: str, source_dir: Path, allow: tuple[str, ...]) -> tuple[bool, str]:
    """``dos-tables --check --plots`` on the preset's runs; returns (complete, message)."""
    from dos_bench.reporting.cells import build_table
    from dos_bench.reporting.cli import main as dos_tables
    from dos_bench.reporting.runs import find_runs
    from dos_bench.reporting.spec import load_spec

    out_md = OUT / preset / "table.md"
    figs = OUT / preset / "figures"
    args = [str(source_dir), "--table", preset, "--output", str(out_md), "--plots", str(figs)]
    rc = dos_tables([*args, "--check"])
    if rc == 0:
        return True, f"complete -> {out_md}"
    spec = load_spec(preset)
    result = build_table(spec, find_runs([source_dir]))
    bad = result.incomplete()
    tolerated = [
        (r, c, cell)
        for r, c, cell in bad
        if cell.status == "no_value" and allow and cell.metric.startswith(allow)
    ]
    msg = f"{len(bad)} cell(s) without a number -> {out_md}"
    if bad and len(tolerated) == len(bad):
        metrics = sorted({cell.metric for _, _, cell in bad})
        return True, f"complete except {len(bad)} cell(s) of not-yet-written metrics {metrics}"
    return False, msg


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="", help="comma-separated presets (default: all)")
    ap.add_argument("--list", action="store_true", help="print the plan and exit")
    ap.add_argument(
        "--no-reuse",
        action="store_true",
        help="train the subset presets (REUSE) separately instead of reusing runs",
    )
    ap.add_argument("--jobs", type=int, default=2, help="multiruns at a time (default 2)")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--data-dir", type=Path, default=OUT / "data")
    ap.add_argument(
        "--allow-missing",
        default="",
        help="comma-separated metric prefixes (e.g. derived.,test_groups.) whose "
        "absence is tolerated (metrics another component has not written yet)",
    )
    ap.add_argument(
        "--hydra-arg",
        action="append",
        default=[],
        help="extra argument for every dos_bench.train call (repeatable)",
    )
    args = ap.parse_args(argv)

    presets = [p for p in args.only.split(",") if p] or list(PLAN)
    unknown = [p for p in presets if p not in PLAN]
    if unknown:
        ap.error(f"unknown preset(s) {unknown}; known: {list(PLAN)}")
    on_disk = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
    missing_plan = [p for p in on_disk if p not in PLAN]
    if missing_plan:
        print(f"tables_smoke: presets without a smoke plan: {missing_plan}", file=sys.stderr)
        return 1
    if args.list:
        for p in presets:
            src = "" if args.no_reuse or p not in REUSE else f"  (table from {REUSE[p]} runs)"
            print(f"{p}{src}")
            for g in PLAN[p]:
                print(f"    {g.name}: {' '.join(g.overrides)}")
        return 0

    os.chdir(ROOT)
    base = common_overrides(args.data_dir, args.seeds, args.batch_size)
    allow = tuple(a for a in args.allow_missing.split(",") if a)
    # a preset that reuses another's runs needs that one (run it too unless already selected)
    if not args.no_reuse:
        for p in list(presets):
            if p in REUSE and REUSE[p] not in presets:
                presets.insert(0, REUSE[p])
    reusing = [p for p in presets if not args.no_reuse and p in REUSE]
    training = [p for p in presets if p not in reusing]
    t_all = time.perf_counter()
    report: dict[str, tuple[str, float]] = {}
    ok_all = True

    for p in reusing:  # before any training: a mismatch is a configuration error
        why = check_reuse(p, REUSE[p])
        if why is not None:
            report[p] = (f"FAILED: cannot reuse {REUSE[p]} runs: {why}", 0.0)
            ok_all = False
    for p in training + reusing:
        shutil.rmtree(OUT / p, ignore_errors=True)

    # every (preset, group) multirun, longest first, on `--jobs` workers
    tasks = sorted(((p, g) for p in training for g in PLAN[p]), key=lambda t: -t[1].cost)
    failed: set[str] = set()
    spent: dict[str, float] = dict.fromkeys(training, 0.0)
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {}
        for p, g in tasks:
            log = OUT / p / f"{g.name}.log"
            futures[pool.submit(run_group, p, g, base, args.hydra_arg, log)] = (p, g, log)
        for fut in as_completed(futures):
            p, g, log = futures[fut]
            try:
                dt = fut.result()
                spent[p] += dt
                print(f"[{p}] {g.name}: done in {dt:.0f} s", flush=True)
            except subprocess.CalledProcessError:
                failed.add(p)
                print(f"[{p}] {g.name}: FAILED, see {log}", flush=True)

    for p in training + reusing:
        if p in report:
            continue
        src = OUT / (REUSE[p] if p in reusing else p)
        complete, msg = build(p, src, allow)
        if p in failed:
            complete, msg = False, f"FAILED multirun; table: {msg}"
        ok_all &= complete
        report[p] = (msg if p not in reusing else f"{msg} (runs of {REUSE[p]})", spent.get(p, 0))
        print(f"[{p}] table: {report[p][0]}", flush=True)

    total = time.perf_counter() - t_all
    print(f"\n== tables smoke ({args.jobs} parallel multiruns) ==")
    for p in training + reusing:
        msg, dt = report[p]
        print(f"{p:24s} {dt:7.0f} s  {msg}")
    print(f"total wall time: {total:.0f} s ({total / 60:.1f} min)")
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())

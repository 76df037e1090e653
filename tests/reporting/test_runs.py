"""Finding runs in a fake multirun: failed runs included, config interpolations resolved."""

from __future__ import annotations

from dos_bench.reporting.runs import find_runs


def test_find_runs_includes_failed(multirun):
    root, _ = multirun
    runs = find_runs(root)
    assert len(runs) == 9
    assert sum(r.ok for r in runs) == 8
    failed = [r for r in runs if not r.ok]
    assert failed[0].get("model.name") == "A" and "no metrics.json" in failed[0].error
    # interpolations of .hydra/config.yaml are resolved where possible
    assert failed[0].get("experiment_name") == "toy_phdos-A"
    assert failed[0].get("paths.output_dir") == "${hydra:runtime.output_dir}"

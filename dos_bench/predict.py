"""``dos-predict``: the DOS of new crystals from a trained checkpoint.

``python -m dos_bench.predict ckpt_path=<run>/checkpoints/last.ckpt inputs=<file or folder>``

The checkpoint carries everything needed (written by ``dos-train``): the resolved config (model,
graph recipe, atom features, target representation) and the grid and units. Structures are read
with pymatgen (CIF, POSCAR/CONTCAR, any format ``Structure.from_file`` knows) and checked like
training data (:mod:`dos_bench.data.structure_checks`, options ``structure_checks`` in
``predict.yaml``): an unreadable file, an unknown element (or one missing from the model's atom
feature table), overlapping atoms, a disordered site or (graphs without self loops) an atom with
no neighbour within the model's cutoff is reported with the file name and the reason and skipped;
the other files are still predicted and written, and the exit code is 1 if any file failed.

Outputs (``output_dir``, default ``outputs/predict/<time>``): ``predictions.csv`` (one row per
material: file, formula, atoms, the spectrum unit, derived quantities), ``predictions.npz`` (ids,
grid, spectra, ``dos_unit``, ``energy_unit``, ``energy_reference``, derived quantities) and one
PNG per material (:func:`dos_bench.reporting.spectra.plot_predicted_spectrum`, axes and units
from :func:`dos_bench.reporting.units.checkpoint_spectrum_units`). For target representations
normalised per material (``max_norm``, ``sum_norm``, ``min_max``, ``valence_norm`` and an
autoencoder over them) the native scale of a new crystal is unknown, so spectra are written in the
normalised units (``max-normalised``, ...) and the CSV and figures say which. The band gap (with
its VBM and CBM) is given on E_F-referenced eDOS grids only: a band-edge grid has the gap removed
and an absolute grid does not say where E_F is.

Checkpoints are loaded only from the configured path, with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import csv
import logging
import sys
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from dos_bench.config import CONF_DIR
from dos_bench.io import ConfigError, DataError, atomic_write, ensure_writable_dir

log = logging.getLogger("dos_bench.predict")

STRUCTURE_SUFFIXES = {".cif", ".vasp", ".poscar", ".json", ".xsf", ".cssr", ".mcif"}
STRUCTURE_NAMES = ("POSCAR", "CONTCAR")


def find_inputs(inputs: str | list[str]) -> list[Path]:
    """Structure files named directly or found in folders (CIF, POSCAR, ...; sorted)."""
    items = [inputs] if isinstance(inputs, str) else list(inputs)
    files: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            files += sorted(
                f
                for f in p.iterdir()
                if f.is_file()
                and (f.suffix.lower() in STRUCTURE_SUFFIXES or f.name.startswith(STRUCTURE_NAMES))
            )
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"inputs: {p} does not exist")
    if not files:
        raise DataError(f"inputs: no structure files found in {items}")
    return files


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A dos_bench checkpoint, read the one safe way (``weights_only=True``, one-line errors:
    :func:`dos_bench.training.resume.load_checkpoint_safely`)."""
    from dos_bench.training.resume import load_checkpoint_safely

    path = Path(path)
    ckpt = load_checkpoint_safely(path)
    if not ckpt.get("dos_bench_config") or not ckpt.get("dos_bench_meta"):
        raise DataError(f"{path}: not a dos_bench checkpoint (no stored config and grid)")
    return ckpt


class Predictor:
    """A trained model rebuilt from a checkpoint, predicting spectra for pymatgen structures."""

    def __init__(self, ckpt_path: str | Path) -> None:
        import torch

        from dos_bench.config import build
        from dos_bench.data.graphs import GraphRecipe
        from dos_bench.models.model import build_model

        ckpt = load_checkpoint(ckpt_path)
        self.cfg = OmegaConf.create(ckpt["dos_bench_config"])
        self.meta = ckpt["dos_bench_meta"]
        # the sizes the data gave at training time, stored beside the config
        self.model = build_model(
            self.cfg.model, in_dim=self.meta["atom_dim"], out_dim=self.meta["target_dim"]
        )
        self.tt = build(self.cfg.target_repr)
        state = ckpt["state_dict"]
        self.model.load_state_dict(
            {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
        )
        self.tt.load_state_dict(
            {
                k[len("target_transform.") :]: v
                for k, v in state.items()
                if k.startswith("target_transform.")
            }
        )
        self.model.eval()
        self.tt.eval()
        self.graph = GraphRecipe(**dict(self.cfg.model.graph))
        self.atom_features = str(self.cfg.model.atom_features)
        self._table_rows: int | None = None
        self.grid = np.asarray(self.meta["grid"], dtype=np.float64)
        self.normalised = self.tt.normalised_per_material
        self._torch = torch

    @property
    def units(self):
        """Axis units of this checkpoint's predicted spectra
        (:func:`dos_bench.reporting.units.checkpoint_spectrum_units`)."""
        from dos_bench.reporting.units import checkpoint_spectrum_units

        return checkpoint_spectrum_units(self.cfg, self.meta, self.normalised)

    def check(self, structure: Any, sid: str, where: str, isolated_atoms: str = "error") -> None:
        """Raise :class:`DataError` (starting with ``where``) if this model cannot take the
        structure: an element without a row in its atom-feature table, or an atom with no
        neighbour within its graph cutoff (``isolated_atoms``: ``error`` or ``warn``; graphs with
        self loops only warn, see :func:`~dos_bench.data.graphs.check_isolated`)."""
        from dos_bench.data.features import atom_feature_table
        from dos_bench.data.graphs import build_graphs, check_isolated
        from dos_bench.data.records import DOSRecord, RecordSet

        if self._table_rows is None:
            self._table_rows = int(atom_feature_table(self.atom_features).shape[0])
        z = np.asarray(structure.atomic_numbers, dtype=np.int64)
        bad = (z < 1) | (z >= self._table_rows)
        if bad.any():
            k = int(np.argmax(bad))
            raise DataError(
                f"{where}: element {structure[k].specie} (Z={int(z[k])}) at site {k} has no row "
                f"in the model's atom-feature table {self.atom_features!r} "
                f"(Z 1..{self._table_rows - 1})"
            )
        dummy = np.zeros(1)
        rs = RecordSet.from_records([DOSRecord(sid, structure, dummy, dummy)])
        check_isolated(
            rs,
            build_graphs(rs, self.graph, progress=False),
            self.graph,
            policy=isolated_atoms,
            where=f"{where}: ",
            option="structure_checks.isolated_atoms",
            remedy="The cutoff is part of the trained model",
        )

    def predict(self, structures: list, ids: list[str]) -> np.ndarray:
        """Spectra ``(N, L)`` for pymatgen structures (native units unless ``normalised``)."""
        from torch_geometric.data import Batch

        from dos_bench.data.graphs import build_graphs, to_data_list
        from dos_bench.data.records import DOSRecord, RecordSet

        torch = self._torch
        dummy = np.zeros(1)
        rs = RecordSet.from_records(
            [DOSRecord(i, s, dummy, dummy) for i, s in zip(ids, structures, strict=True)]
        )
        data = to_data_list(
            rs, build_graphs(rs, self.graph, progress=False), atom_features=self.atom_features
        )
        batch = Batch.from_data_list(data)
        with torch.no_grad():
            out = self.model(batch)["pred"]
            pred = self.tt.link(out)
            # a new crystal's own scale is unknown: normalised representations stay normalised
            native = self.tt.decode(pred.float(), self.tt.unit_scale(len(ids)))
        return native.numpy()


def derived_quantities(
    kind: str | None,
    grid: np.ndarray,
    spectra: np.ndarray,
    n_atoms: np.ndarray,
    reference: str = "fermi",
) -> dict[str, np.ndarray]:
    """Band gap with its VBM and CBM (:func:`dos_bench.physics.band_gaps`; eDOS on an
    E_F-referenced grid only, ``reference="fermi"``) and VB-gap flag (eDOS), or heat capacity and
    mean frequency (phDOS)."""
    import dos_bench.physics as ph

    out: dict[str, np.ndarray] = {}
    if kind == "edos":
        if reference == "fermi":
            gap, vbm, cbm = ph.band_gaps(grid, spectra, 0.0)
            out["band_gap_eV"] = np.asarray(gap)
            out["vbm_eV"] = np.asarray(vbm)
            out["cbm_eV"] = np.asarray(cbm)
        out["vb_gap"] = np.asarray(ph.vb_gap_flags(grid, spectra))
    elif kind == "phdos":
        out["cv_300K_J_per_K_mol"] = np.asarray(ph.heat_capacity(grid, spectra, n_atoms, T=300.0))
        out["mean_freq_cm1"] = np.asarray(ph.average_frequency(grid, spectra))
    return out


def predict(cfg: DictConfig) -> int:
    """Run prediction; returns the number of files that could not be used."""
    from dos_bench.data.structure_checks import StructureChecks, read_structure_file
    from dos_bench.models.gemm import set_cpu_gemm

    if not cfg.get("ckpt_path"):
        raise ConfigError("ckpt_path is required: ckpt_path=<run>/checkpoints/<file>.ckpt")
    if not cfg.get("inputs"):
        raise ConfigError("inputs is required: inputs=<CIF/POSCAR file or folder>")
    checks = StructureChecks.from_config(cfg.get("structure_checks"), prefix="structure_checks")
    set_cpu_gemm(cfg.get("cpu_gemm", "onednn"))
    predictor = Predictor(cfg.ckpt_path)
    files = find_inputs(
        OmegaConf.to_object(cfg.inputs) if not isinstance(cfg.inputs, str) else cfg.inputs
    )
    out_dir = ensure_writable_dir(Path(cfg.output_dir), key="output_dir")
    structures, names, failed = [], [], []
    reasons: list[str] = []
    for f in files:
        try:
            s = read_structure_file(f, checks)  # readable, known elements, ordered, no overlaps
            predictor.check(s, f.stem, str(f), checks.isolated_atoms)
            structures.append(s)
            names.append(f)
        except Exception as exc:  # noqa: BLE001 - any problem with one file: name it, go on
            failed.append(f)
            msg = str(exc).strip() if isinstance(exc, DataError) else ""
            if not msg:
                first = str(exc).splitlines()[0] if str(exc) else ""
                msg = f"{f}: cannot use this structure ({type(exc).__name__}: {first})"
            elif str(f) not in msg:
                msg = f"{f}: {msg}"
            reasons.append(msg)
            log.error("%s; skipped", msg)
    if structures:
        ids = [f.stem for f in names]
        spectra = predictor.predict(structures, ids)
        n_atoms = np.array([len(s) for s in structures])
        units = predictor.units
        derived = derived_quantities(
            units.kind, predictor.grid, spectra, n_atoms, units.reference or "absolute"
        )
        # normalised: the representation's unit (max-normalised, ...); native: the dataset's own
        unit = units.dos_unit if predictor.normalised else str(predictor.meta.get("dos_unit") or "")
        with atomic_write(out_dir / "predictions.npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(
                    fh,
                    ids=np.array(ids),
                    files=np.array([str(f) for f in names]),
                    energies=predictor.grid,
                    pred=spectra,
                    dos_unit=np.asarray(unit),
                    energy_unit=np.asarray(str(predictor.meta.get("energy_unit") or "")),
                    energy_reference=np.asarray(units.reference or "absolute"),
                    kind=np.asarray(units.kind),
                    **{k: v for k, v in derived.items()},
                )
        with atomic_write(out_dir / "predictions.csv") as tmp:
            with open(tmp, "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["id", "file", "formula", "n_atoms", "dos_unit", *derived])
                for i, (f, s) in enumerate(zip(names, structures, strict=True)):
                    w.writerow(
                        [
                            ids[i],
                            str(f),
                            s.composition.reduced_formula,
                            len(s),
                            unit or "not recorded",
                            *[_fmt(v[i]) for v in derived.values()],
                        ]
                    )
        from dos_bench.reporting.spectra import plot_predicted_spectrum

        edges = {k: derived.get(f"{k}_eV") for k in ("band_gap", "vbm", "cbm")}
        for i, sid in enumerate(ids):
            plot_predicted_spectrum(
                predictor.grid,
                spectra[i],
                out_dir / f"{sid}.png",
                units,
                f"{sid}: {structures[i].composition.reduced_formula}",
                **{k: None if v is None else float(v[i]) for k, v in edges.items()},
            )
        log.info("wrote %d predictions to %s", len(ids), out_dir)
    if failed:
        log.error(
            "%d of %d files failed: %s", len(failed), len(files), ", ".join(str(f) for f in failed)
        )
        print(
            f"{len(failed)} of {len(files)} structure files skipped:\n  " + "\n  ".join(reasons),
            file=sys.stderr,
            flush=True,
        )
    print(f"predicted {len(structures)} of {len(files)} structures -> {out_dir}", flush=True)
    return len(failed)


def _fmt(v: Any) -> Any:
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    return f"{float(v):.6g}"


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="predict")
def main(cfg: DictConfig) -> None:
    try:
        n_failed = predict(cfg)
    except (ConfigError, DataError) as exc:
        log.error("%s: %s", type(exc).__name__, exc)
        raise SystemExit(2) from None
    if n_failed:
        sys.exit(1)


if __name__ == "__main__":
    main()

r"""Bundled physical toy datasets: ``toy_edos`` (tight-binding eDOS) and ``toy_phdos`` (springs).

Both datasets are generated on first use from the crystal-structure prototypes that ship inside
pymatgen (``pymatgen/analysis/prototypes/aflow_prototypes.json.gz``, the AFLOW prototype library,
288 entries) and cached as one ``.npz`` :class:`~dos_bench.data.records.RecordSet`.  They mimic the
data of the published benchmarks at a tiny fraction of the cost:

* ``toy_edos`` plays the role of the JARVIS-DFT electronic DOS used by ALIGNN-DOS (§3: DOS on a
  fixed energy window around the Fermi level) and of the Materials Project eDOS used by
  DOSTransformer (appendix A.1) and Mat2Spec (Methods, "Data": eDOS relative to the Fermi level /
  band edges, Gaussian-smeared, normalised).
* ``toy_phdos`` plays the role of the DFPT phonon DOS of Petretto et al. used by Mat2Spec
  (Methods: 0-1000 cm^-1, 51 points) and DOSTransformer (A.1).

The *raw* spectra are kept on fine absolute grids shared by every material of a set; the published
representations (300 bins -5..10 eV around E_F; 201 points -5..5 eV; 128 band-edge-aligned points
VBM-4 .. CBM+4 with the gap removed; 51 points 0..1000 cm^-1) are derived from ``energies``,
``spectra`` and the metadata by another module.  Every state lies inside the stored grid, so a
spectrum is exactly zero beyond the grid edges (zero padding is exact).

The generator, by stage (each module's docstring holds the model it implements):

* :mod:`~.elements` — the element pool and the per-element parameters;
* :mod:`~.structures` — decorated AFLOW prototypes (shared by both datasets);
* :mod:`~.numerics` — k-meshes, Bloch sums and Gaussian broadening;
* :mod:`~.electrons` — the :math:`sp^3` tight-binding eDOS (``toy_edos``);
* :mod:`~.phonons` — the harmonic-spring phonon DOS (``toy_phdos``);
* :mod:`~.datasets` — :class:`ToyEDOS` / :class:`ToyPhDOS`: generation in a process pool and the
  cached record set.
"""

from dos_bench.data.sources.toy.datasets import GENERATOR_VERSION, ToyEDOS, ToyPhDOS
from dos_bench.data.sources.toy.electrons import (
    HARRISON_ETA,
    HBAR2_OVER_ME,
    EDOSParams,
    compute_edos,
    edos_window,
    harrison_hoppings,
    sk_block_norm,
    slater_koster_sp,
    sp_bands,
    structure_bands,
)
from dos_bench.data.sources.toy.elements import ELEMENT_POOL, ElementData
from dos_bench.data.sources.toy.numerics import bloch_matrices, broaden, gamma_mesh, smooth_cutoff
from dos_bench.data.sources.toy.phonons import (
    SQRT_EV_A2_AMU_TO_CM1,
    PhDOSParams,
    compute_phdos,
    phdos_max_frequency,
    phonon_frequencies,
    spring_network,
    structure_phonons,
)
from dos_bench.data.sources.toy.structures import (
    CRYSTAL_SYSTEMS,
    StructureParams,
    ToyStructure,
    make_toy_structure,
    prototype_species,
    structure_from_prototype,
)

__all__ = [
    "CRYSTAL_SYSTEMS",
    "ELEMENT_POOL",
    "GENERATOR_VERSION",
    "HARRISON_ETA",
    "HBAR2_OVER_ME",
    "SQRT_EV_A2_AMU_TO_CM1",
    "EDOSParams",
    "ElementData",
    "PhDOSParams",
    "StructureParams",
    "ToyEDOS",
    "ToyPhDOS",
    "ToyStructure",
    "bloch_matrices",
    "broaden",
    "compute_edos",
    "compute_phdos",
    "edos_window",
    "gamma_mesh",
    "harrison_hoppings",
    "make_toy_structure",
    "phdos_max_frequency",
    "phonon_frequencies",
    "prototype_species",
    "sk_block_norm",
    "slater_koster_sp",
    "smooth_cutoff",
    "sp_bands",
    "spring_network",
    "structure_bands",
    "structure_from_prototype",
    "structure_phonons",
]

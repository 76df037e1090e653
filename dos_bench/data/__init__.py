"""The data layer, in pipeline order.

* :mod:`~dos_bench.data.download` — ``dos-data download``: fetch, verify and unpack the published
  files, build the Materials Project documents (training never downloads);
* :mod:`~dos_bench.data.sources` — raw files (or the generated toy sets) →
  :class:`~dos_bench.data.records.RecordSet`, cached as one ``.npz``; :mod:`~.records` holds the
  record format and :mod:`~.structure_checks` the checks every structure passes;
* :mod:`~.spectra` — records → spectra on the paper grids (recipes);
* :mod:`~.splits`, :mod:`~.split_files` — records → train / val / test;
* :mod:`~.graphs` (with :mod:`~.graph_store`, :mod:`~.graph_data`), :mod:`~.features`,
  :mod:`~.element_tables` — structures → crystal graphs with atom features;
* :mod:`~.transforms` — spectra → the target representation the model learns;
* :mod:`~.datamodule` — all of the above as one LightningDataModule; :mod:`~.cli` — ``dos-data``.
"""

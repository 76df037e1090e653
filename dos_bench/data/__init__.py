"""Records, sources, spectra, graphs, splits, target representations and the datamodule."""

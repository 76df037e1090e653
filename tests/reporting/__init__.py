"""Tests of dos_bench.reporting, one file per module (a package: names like test_spectra and
test_cli also exist elsewhere)."""

"""Tests of dos_bench.training (a package: its test file names may repeat those in tests/)."""

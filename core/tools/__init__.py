"""Developer tooling (offline bundles, the reference-model trainer, perf probes, environment recipes).

Nothing in the product imports this package: `vqbench --help` and `pytest -m cpu` collection never load it."""

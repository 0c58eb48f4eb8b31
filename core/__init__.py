"""vqbench core, grouped by the stages a video passes through. From the ground up, each package imports
only packages above it in this list (its ``__init__`` says which; ``bench/unit/test_layers.py`` checks):

- ``base``: errors, the checkout's paths, atomic writes, processes, the time ledger, the record types
  and the results file;
- ``inputs``: a video becomes sampled frames and a request (folders, decoding, sampling, tasks);
- ``models``: what a model is (embedded tiny models, shape-only specs, checkpoints, families);
- ``plan``: what runs where (settings, the catalog of engines and tools, formats, capability verdicts,
  memory budgets, the matrix of engines and cells, goldens on disk, the schedule over workers);
- ``metrics``: measurements and judgements (memory, roofline, drift statistics and verdicts);
- ``quant`` and ``backends``: quantizers and inference engines, each behind one small interface;
- ``cells``: running cells, one engine at a time, into typed records (both front doors run through it);
- ``load``: a real vLLM server under load;
- ``report``: reports of results;
- the front doors: ``suite`` (the pytest plugin), ``commands`` (the ``vqbench`` subcommands), ``cli``;
  and ``tools`` (developer tooling, never imported by the product).

Nothing heavy is imported here: torch, transformers, vLLM and the quantizers are imported only by
the modules that need them, so ``vqbench --help`` and ``pytest -m cpu`` collection stay fast.
"""

__version__ = "0.1.0"

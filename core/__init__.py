"""vqbench core: video input, tasks, model recipes, quantization and inference backends.

Nothing heavy is imported here: torch, transformers, vLLM and the quantizers are imported only by
the modules that need them, so ``vqbench --help`` and ``pytest -m cpu`` collection stay fast.
"""

__version__ = "0.1.0"

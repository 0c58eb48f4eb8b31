"""Implementations of the ``vqbench`` subcommands (imported only when a subcommand runs), and the Ray
driver of ``vqbench cluster`` (``cluster``). A front door: it may import any stage; only ``core.cli``
imports it."""

"""Implementations of the ``vqbench`` subcommands (imported only when a subcommand runs)."""

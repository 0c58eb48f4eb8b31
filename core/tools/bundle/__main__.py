"""``python -m core.tools.bundle``: the bundler where vqbench is not installed (e.g. a GPU machine)."""

from core.tools.bundle import main

raise SystemExit(main(prog="python -m core.tools.bundle"))

"""Recipes for the separate environments some engines need (``python -m core.tools.envs.<name> --help``).

Each recipe is a stdlib-only script: it runs with any Python 3.10+, before the project or any
engine is installed, and is idempotent (a second run checks and returns).
"""

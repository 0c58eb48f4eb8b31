"""Project conftest: makes the vqbench plugin available from a plain checkout too.

When vqbench is installed (``pip install -e .``) pytest loads the plugin through its ``pytest11``
entry point; otherwise it is registered here. ``pytest_addoption`` is a historic hook, so the
plugin's options are still added.
"""


def pytest_addoption(parser, pluginmanager):
    if not pluginmanager.has_plugin("vqbench"):
        import core.suite.plugin

        pluginmanager.register(core.suite.plugin, "vqbench")


try:  # property tests are reproducible: a fixed example stream, no example database
    from hypothesis import settings as _hsettings

    # no deadline: a busy machine (or a first import of torch) must not fail a property test
    _hsettings.register_profile("vqbench", derandomize=True, database=None, print_blob=True, deadline=None)
    _hsettings.load_profile("vqbench")
except ImportError:
    pass

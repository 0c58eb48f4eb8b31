"""The pytest glue: hooks and options (plugin), session state, matrix-to-params, xdist, timing."""

"""The ground floor every stage stands on: errors (``errors``), the checkout's paths (``paths``),
atomic file writes (``atomic``), process trees (``procs``), the pickle guard (``safety``), the time
ledger (``timeline``), environment probes (``envprobe``), the record types a run writes (``records``)
and the results file they go to (``results``).

May import: nothing of core.
"""

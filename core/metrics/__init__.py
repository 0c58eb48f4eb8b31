"""Measurements and judgements: device memory (``memory``), roofline floors (``roofline``), drift
statistics and verdicts (``drift``, ``stats``, ``sensitivity``, ``vocab``, ``vision``, ``verdict``, and
the one judge both front doors call, ``judge``), the latency history (``history``), fingerprints of a
cell's inputs (``fingerprint``).

May import: ``core.base``, ``core.inputs``, ``core.models``, ``core.plan``.
"""

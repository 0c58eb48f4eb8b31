"""Running cells (an engine asked about one clip with one task): one engine loaded at a time, every
answer a typed record (``runner``); answering a list of clips while worker processes decode the next
ones (``answering``: ``vqbench run``'s loop); what a results file has answered already (``resume``).
Both front doors, the pytest suite and ``vqbench run``, run their cells through here.

May import: ``core.base``, ``core.inputs``, ``core.models``, ``core.plan``, ``core.metrics``,
``core.quant``, ``core.backends``.
"""

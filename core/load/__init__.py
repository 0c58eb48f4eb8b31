"""Serving under load: a real ``vllm serve`` process (``server``), the smallest client that sends the
suite's own frames to it (``client``), and the scenarios that load it (``scenarios``: offline, server
with Poisson arrivals, camera streams, a sweep for the largest rate under an SLO), with the answers
under load compared with the same clips answered alone (batch drift) and the engine's own memory
figures (``capacity``).

May import: ``core.base``, ``core.inputs``, ``core.models``, ``core.plan``, ``core.metrics``,
``core.quant``, ``core.backends`` (the vLLM engine arguments a server is started with). Nothing here
imports the pytest plugin or the commands; they import this.
"""

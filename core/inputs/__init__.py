"""A video becomes a request: folders scanned into clips (``dataset``), frames decoded (``video``;
NVDEC in ``nvdec``; worker processes that decode ahead in ``decode``), which frames at which size
(``sampling``), what is asked of a clip and how its answer is read (``tasks``), the request an engine
answers (``requests``), and the synthetic clips fixtures and tests are made of (``synth``).

May import: ``core.base``.
"""

"""What runs where, decided before any engine loads: the settings (``settings``), what every engine and
quantization tool declares about itself (``catalog``), the formats and their routes per engine
(``formats``), whether a combination can run here and in which mode (``capability``; the kernels a
format should run and was seen to run: ``kernels``), the device (``device``), memory and context
budgets (``estimate``), the matrix of engines and cells with their verdicts (``matrix``), the goldens
on disk (``golden``) and the cut of the matrix into work units for workers (``schedule``).

May import: ``core.base``, ``core.inputs``, ``core.models``.
"""

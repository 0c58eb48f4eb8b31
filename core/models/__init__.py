"""What a model is: the embedded tiny models (built here), shape-only specs of real models, user
checkpoints and the pre-quantized ones among them (``registry``, ``prequantized``), their dimensions
(``shape``) and what each family's prompt, processor arguments and video tokens are (``families``).

May import: ``core.base``, ``core.inputs`` (the request a family builds inputs from).
"""

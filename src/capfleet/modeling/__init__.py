"""capfleet's own captioner/scorer architecture (ViT encoder, causal decoder, CLIP-style heads) and its losses.

``train/`` trains it, ``models/`` loads it like any transformers model. Importing ``capfleet.modeling.model``
registers the model type with transformers' Auto classes; this package itself imports nothing, so that
``capfleet.modeling.configuration`` stays a cheap import.
"""

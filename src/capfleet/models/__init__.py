"""Captioners and scorers behind small interfaces, loaded by alias, hub id or local folder."""

from capfleet.models.registry import ModelLoadError, load_captioner, load_scorer

__all__ = ["ModelLoadError", "load_captioner", "load_scorer"]

"""capfleet: caption and re-caption image datasets at scale, resumably."""

__version__ = "0.1.0"

"""Output formats; each writes one shard through an atomic shard writer."""

from capfleet.sinks.imagefolder import ImageFolderSink

__all__ = ["ImageFolderSink"]

"""Output formats (`--format`); each writes one shard through an atomic `ShardWriter`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from capfleet.config import ConfigError, RunConfig
from capfleet.sinks import artifacts, imagefolder, parquet, webdataset
from capfleet.sinks.base import ShardWriter
from capfleet.sinks.location import Location

__all__ = ["ShardWriter", "shard_writer_factory", "read_shard_rows"]


def shard_writer_factory(config: RunConfig, location: Location) -> Callable[[str], ShardWriter]:
    """`open(shard_name) -> ShardWriter` for the run's `--format`."""
    if config.format == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ConfigError("--format parquet needs pyarrow: pip install 'capfleet[parquet]'") from None
        return lambda name: parquet.ParquetShardWriter(location, name, config.images)
    if config.format == "webdataset":
        return lambda name: webdataset.WebDatasetShardWriter(location, name)
    if config.format == "artifacts":
        return lambda name: artifacts.ArtifactsShardWriter(location, name)
    return lambda name: imagefolder.ImageFolderShardWriter(location, name, config.txt, config.keep_names)


def read_shard_rows(path: Path) -> Iterator[dict]:
    """The rows of one published shard, whatever its format (used by `capfleet merge`)."""
    if path.suffix == ".tar":
        return webdataset.read_rows(path)
    if path.suffix == ".parquet":
        return parquet.read_rows(path)
    if (path / imagefolder.METADATA_NAME).exists():
        return imagefolder.read_rows(path)
    return artifacts.read_rows(path)

"""Where shard processors run: this process (local) or Apache Beam workers."""

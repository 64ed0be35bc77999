"""Per-sample stages between reading and captioning: decoding and its guards."""

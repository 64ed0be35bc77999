"""Storage: local paths, fsspec URLs and http(s), for reading inputs and publishing outputs.

`paths.py` says what a path is and opens it (local files, fsspec filesystems); `reading.py` reads one
object within a size and time limit; `location.py` is OUT_DIR with atomic publication.
"""

"""Tar members written without `tarfile.addfile`'s per-member Python work.

A model-free webdataset run is mostly tar I/O, and `tarfile` builds every header through PAX
checks, a `TarInfo` copy and several field encoders: that was most of the run's CPU time. capfleet's
own members are plain files with fixed metadata (mode 644, owner 0, mtime 0), so their USTAR header
is one `struct.pack`; names that do not fit USTAR (over 100 bytes, not ASCII) still go through
`tarfile`. The bytes are the same as `tarfile`'s PAX writer gives for such a member (a test compares them).
"""

from __future__ import annotations

import struct
import tarfile
from typing import BinaryIO

BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE
_HEADER = struct.Struct("100s8s8s8s12s12s8sc100s6s2s32s32s8s8s155s12x")


def member_bytes(name: str, data: bytes) -> bytes:
    """Header, data and padding of one regular-file member."""
    if name.isascii() and len(name) <= 100:
        return _padded(_ustar_header(name.encode("ascii"), len(data)), data)
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    return _padded(_pax_header(info), data)


def _pax_header(info: tarfile.TarInfo) -> bytes:
    return info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape")


def _padded(header: bytes, data: bytes) -> bytes:
    return header + data + bytes(-len(data) % BLOCK)


def _ustar_header(name: bytes, size: int) -> bytes:
    octal = b"%07o\x00"
    fields = [name, octal % 0o644, octal % 0, octal % 0, b"%011o\x00" % size, b"%011o\x00" % 0, b" " * 8, b"0"]
    fields += [b"", b"ustar\x00", b"00", b"", b"", b"", b"", b""]  # no link, owner names, device numbers
    header = bytearray(_HEADER.pack(*fields))
    header[148:156] = b"%06o\x00 " % sum(header)
    return bytes(header)


class TarWriter:
    """An uncompressed tar written member by member; `close` ends it as `tarfile` does."""

    def __init__(self, path) -> None:
        self._file: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed by close()
        self._offset = 0

    def add(self, name: str, data: bytes) -> None:
        self._write(member_bytes(name, data))

    def add_member(self, info: tarfile.TarInfo, data: bytes) -> None:
        """A member copied from another tar, its metadata kept."""
        self._write(_padded(_pax_header(info), data))

    def _write(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self._offset += len(chunk)

    def close(self) -> None:
        end = self._offset + 2 * BLOCK
        self._file.write(bytes(2 * BLOCK + (-end % RECORD)))
        self._file.close()

"""capfleet's own tar writer gives the same bytes as `tarfile`'s PAX writer for the members it writes."""

from __future__ import annotations

import io
import tarfile

import pytest

from capfleet.formats.tar_members import TarWriter, member_bytes

MEMBERS = [
    ("000000001.jpg", b"\xff\xd8" + bytes(range(256)) * 7),  # not a multiple of 512: padded
    ("k.json", b""),
    ("a" * 100, b"exactly the USTAR name field"),
    ("b" * 101, b"too long for USTAR: a PAX header"),
    ("photo_päth.txt", b"not ASCII"),
    ("x" * 600 + ".jpg", b"1" * 512),
]


def _tarfile_bytes(members) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize(("name", "data"), MEMBERS, ids=lambda value: str(value)[:12])
def test_each_member_is_what_tarfile_writes(name, data):
    ours = member_bytes(name, data)
    assert len(ours) % 512 == 0 and _tarfile_bytes([(name, data)])[: len(ours)] == ours


def test_a_whole_archive_is_byte_identical_and_reads_back(tmp_path):
    writer = TarWriter(tmp_path / "shard.tar")
    for name, data in MEMBERS:
        writer.add(name, data)
    with tarfile.open(fileobj=io.BytesIO(_tarfile_bytes(MEMBERS[:2]))) as source:  # copied members keep metadata
        for member in source:
            writer.add_member(member, source.extractfile(member).read())
    writer.close()
    assert (tmp_path / "shard.tar").read_bytes() == _tarfile_bytes(MEMBERS + MEMBERS[:2])
    with tarfile.open(tmp_path / "shard.tar") as archive:
        assert [(m.name, archive.extractfile(m).read()) for m in archive] == MEMBERS + MEMBERS[:2]

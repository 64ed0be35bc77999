"""Build webdataset tars in tests, including the hostile ones a crawl can deliver."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from tests.image_zoo import _jpeg_bytes, _noise


def jpeg(seed: int) -> bytes:
    return _jpeg_bytes(_noise(40, 32, seed=seed))


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def write_hostile_tar(path: Path, huge_bytes: int) -> dict[str, str]:
    """Returns member key -> expected outcome ("ok", or a word the error must contain).

    The huge member's header claims `huge_bytes`; its data is a hole in a sparse file, so a
    2 GB member costs no disk and, read with seeks, no time.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    expected = {}
    with open(path, "wb") as raw, tarfile.open(fileobj=raw, mode="w") as archive:

        def add(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.size = kind, link, len(data) if kind == tarfile.REGTYPE else 0
            archive.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

        add("good0.jpg", jpeg(0))
        add("good0.txt", b"a caption from txt")
        expected["good0"] = "ok"
        add("/abs/evil.jpg", jpeg(1))
        expected["/abs/evil"] = "unsafe"
        add("../escape.jpg", jpeg(2))
        expected["../escape"] = "unsafe"
        add("link.jpg", kind=tarfile.SYMTYPE, link="/etc/passwd")
        expected["link"] = "link"
        add("device.jpg", kind=tarfile.CHRTYPE)
        expected["device"] = "device"
        add("notimage.cls", b"3")
        add("notimage.txt", b"no picture here")
        expected["notimage"] = "no image"
        add("garbage.jpg", b"\x00" * 300)
        expected["garbage"] = "decode"
        add("good0.png", jpeg(3))  # good0 again, not next to its first members
        expected["good0 (again)"] = "duplicate"
        huge = tarfile.TarInfo("huge.jpg")
        huge.size = huge_bytes
        raw.write(huge.tobuf(archive.format, archive.encoding, archive.errors))
        raw.seek(-(-huge_bytes // 512) * 512, io.SEEK_CUR)  # skip the data: a hole, not 2 GB of writes
        archive.offset = raw.tell()
        expected["huge"] = "limit"
        add("good1.jpg", jpeg(4))
        add("good1.json", b'{"caption": "a caption from json", "width": 40}')
        expected["good1"] = "ok"
    return expected

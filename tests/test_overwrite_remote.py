"""`--overwrite` on an object store deletes exactly what the run recorded, as on a local disk."""

from __future__ import annotations

from capfleet.io.location import Location
from tests.image_zoo import write_noise_images
from tests.test_data_safety import caption


def test_overwrite_on_an_object_store_refuses_user_files_then_discards_exactly_the_run(tmp_path):
    write_noise_images(tmp_path / "imgs", 6)
    url = "memory://overwrite/out"
    assert caption(tmp_path / "imgs", "-o", url).exit_code == 0
    location = Location(url)
    location.fs.pipe_file(location.path("00000/my-edits.txt"), b"the user's")
    location.fs.pipe_file(location.path("00000.notes.txt"), b"the user's")
    before = sorted(location.fs.find(location.root))
    result = caption(tmp_path / "imgs", "-o", url, "--overwrite", "--format", "parquet")
    assert result.exit_code == 2 and "00000/my-edits.txt, 00000.notes.txt" in result.output, result.output
    assert sorted(location.fs.find(location.root)) == before
    location.fs.rm([location.path("00000/my-edits.txt"), location.path("00000.notes.txt")])
    result = caption(tmp_path / "imgs", "-o", url, "--overwrite", "--format", "parquet")
    assert result.exit_code == 0, result.output
    assert location.list() == ["00000.parquet", "00001.parquet", "_capfleet"]  # the imagefolder run is gone

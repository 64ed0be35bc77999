from __future__ import annotations

import pytest

from capfleet.sources.files import FileSource, InputError, list_input
from capfleet.sources.plan import plan_shards, shard_items
from capfleet.sources.units import fetched
from tests.image_zoo import write_noise_images


def test_folder_listing_is_recursive_sorted_and_pairs_sidecar_captions(tmp_path):
    write_noise_images(tmp_path / "b", 2)
    write_noise_images(tmp_path / "a", 2)
    (tmp_path / "a" / "img-001.txt").write_text("a cat on a mat\n")
    (tmp_path / ".hidden").mkdir()
    write_noise_images(tmp_path / ".hidden", 1)
    (tmp_path / "notes.md").write_text("not an image")
    listed = list(list_input(str(tmp_path)))
    assert [item.source for item in listed] == sorted(str(p) for p in tmp_path.glob("[ab]/*.jpg"))
    assert [item.original_text for item in listed] == [None, "a cat on a mat", None, None]


def test_file_list_resolves_relative_paths_and_reads_tab_captions(tmp_path):
    images = write_noise_images(tmp_path / "imgs", 2)
    listing = tmp_path / "dataset.txt"
    listing.write_text(f"# a comment\nimgs/{images[0].name}\tfirst caption\n\n{images[1]}\nhttps://example.com/x.jpg\n")
    listed = list(list_input(str(listing)))
    assert [item.source for item in listed] == [str(images[0]), str(images[1]), "https://example.com/x.jpg"]
    assert listed[0].original_text == "first caption"
    assert listed[1].original_text is None


def test_fsspec_prefix_listing_and_reading(tmp_path):
    """Any fsspec backend (gs://, s3://, ...) goes this way; memory:// needs no network."""
    import fsspec

    from capfleet.io.reading import read_bytes

    fs = fsspec.filesystem("memory")
    for path in write_noise_images(tmp_path, 3):
        fs.pipe(f"/bucket/photos/{path.name}", path.read_bytes())
    fs.pipe("/bucket/photos/img-002.txt", b"a remote caption")
    listed = list(list_input("memory://bucket/photos"))
    assert [item.source.rsplit("/", 1)[1] for item in listed] == ["img-000.jpg", "img-001.jpg", "img-002.jpg"]
    assert listed[2].original_text == "a remote caption"
    assert read_bytes(listed[0].source) == (tmp_path / "img-000.jpg").read_bytes()


def test_missing_input_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="input not found"):
        list(list_input(str(tmp_path / "nope")))


def test_keys_are_global_positions_and_duplicates_are_kept_once(tmp_path):
    images = write_noise_images(tmp_path, 3)
    source = FileSource([str(images[0]), str(tmp_path)])
    items = list(source.items())
    assert [item.key for item in items] == ["000000000", "000000001", "000000002"]
    assert [item.source for item in items] == [str(images[0]), str(images[1]), str(images[2])]


def test_limit_truncates_the_listing_not_the_plan(tmp_path):
    rows = list(FileSource([str(p) for p in write_noise_images(tmp_path, 7)]).listing())
    full = plan_shards(rows, 3)
    limited = plan_shards(rows, 3, limit=4)
    assert [len(list(shard_items(s))) for s in full] == [3, 3, 1]
    assert [len(list(shard_items(s))) for s in limited] == [3, 1]
    assert list(shard_items(limited[1])) == list(shard_items(full[1]))[:1]


def test_unreadable_file_becomes_an_error_sample(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    images = write_noise_images(tmp_path, 2)
    source = FileSource([str(p) for p in images])
    (shard,) = source.plan(source.listing(), 10)
    images[1].unlink()
    with ThreadPoolExecutor(2) as pool:
        samples = list(fetched(source.read(shard), pool, window=4))
    assert samples[0].error is None and samples[0].data
    assert samples[1].error.startswith("read failed")


def test_imagefolder_metadata_captions_become_original_captions(tmp_path):
    import json

    shard = tmp_path / "dataset" / "00000"
    write_noise_images(shard, 3)
    rows = [{"file_name": "img-000.jpg", "text": "from metadata"}, {"file_name": "img-001.jpg", "caption": "alt key"}]
    (shard / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows) + "not json\n")
    (shard / "img-001.txt").write_text("the sidecar wins")
    listed = list(list_input(str(tmp_path / "dataset")))
    assert [item.original_text for item in listed] == ["from metadata", "the sidecar wins", None]

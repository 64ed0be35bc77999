"""Reading captioned imagefolders: bad rows are skipped and counted; splits and sharding are deterministic."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from capfleet.train.data import CaptionDataset, collate, scan_imagefolder, split_by_key
from capfleet.train.distributed import ShardedBatchSampler
from tests.train.helpers import make_shapes_dataset


def make_bad_dataset(root: Path) -> Path:
    """8 good images + one of every kind of breakage."""
    make_shapes_dataset(root, n=8, size=16, shards=1)
    shard = root / "00000"
    (shard / "notanimage.png").write_bytes(b"this is not a png at all")
    rows = [
        {"file_name": "missing.png", "text": "a red square"},
        {"file_name": "000000.png", "text": "   "},
        {"file_name": "000001.png", "text": "", "captions": []},
        {"file_name": "notanimage.png", "text": "a blue circle"},
        {"text": "no file name"},
    ]
    with (shard / "metadata.jsonl").open("a") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in rows) + "{not json\n")
    return root


def test_bad_rows_are_skipped_and_counted(tmp_path):
    scan = scan_imagefolder(make_bad_dataset(tmp_path / "bad"))
    assert len(scan.records) == 8
    assert dict(scan.skipped) == {"missing_image": 1, "empty_caption": 2, "unreadable_image": 1, "bad_row": 2}


def test_image_broken_after_scan_is_skipped_at_load(tmp_path):
    root = make_shapes_dataset(tmp_path / "ds", n=4, size=16, shards=1)
    scan = scan_imagefolder(root)
    ds = CaptionDataset(scan.records, lambda im: torch.zeros(3, 2, 2), lambda t: [1, len(t), 2], scan.skipped)
    scan.records[1].image_path.write_bytes(b"\x89PNG truncated")
    scan.records[2].image_path.unlink()
    pixels, ids = ds[1]  # falls through to the next good sample (index 3)
    assert ids.tolist() == [1, len(scan.records[3].text), 2]
    assert ds.skipped["unreadable_image"] == 2
    batch = collate([ds[0], (pixels, torch.tensor([1, 2]))])
    assert batch["input_ids"].tolist()[1] == [1, 2, 0] and batch["labels"].tolist()[1] == [1, 2, -100]


def test_caption_modes_and_split_by_key(tmp_path):
    root = make_shapes_dataset(tmp_path / "ds", n=40, size=16)
    recs = scan_imagefolder(root, caption_mode="all").records
    assert len(recs) == 80  # two phrasings per image
    train, held = split_by_key(recs, held_out_fraction=0.25, seed=3)
    assert len(train) + len(held) == 80 and 0 < len(held) < 40
    assert not {r.key for r in train} & {r.key for r in held}  # both phrasings on the same side
    again, _ = split_by_key(list(reversed(recs)), held_out_fraction=0.25, seed=3)
    assert {r.key for r in again} == {r.key for r in train}
    shutil.rmtree(root / "00001")  # dropping a shard does not move the others across the split
    train2, _ = split_by_key(scan_imagefolder(root).records, held_out_fraction=0.25, seed=3)
    assert {r.key for r in train2} <= {r.key for r in train}


def test_sharded_batches_reassemble_the_global_batch():
    single = ShardedBatchSampler(30, 6, seed=7)
    ranks = [ShardedBatchSampler(30, 3, rank=r, world_size=2, seed=7) for r in range(2)]
    for epoch in (0, 1):
        for s in (single, *ranks):
            s.set_position(epoch, 0)
        merged = [a + b for a, b in zip(*ranks, strict=True)]
        assert merged == list(single) and len(merged) == 5
    single.set_position(1, 3)
    assert list(single) == merged[3:]

import json
import logging

import pytest

from capfleet.evaluate.references import Prediction, match, read_predictions, read_references, reference_captions
from tests.evaluate.helpers import REFERENCES, caption_row, synth_rows, write_shards


def test_synth_layout_gives_every_phrasing_and_image_path(tmp_path):
    refs = read_references(write_shards(tmp_path, synth_rows()))
    assert refs.captions() == REFERENCES
    assert refs.rows["000000005"].image_path == tmp_path / "00001" / "000000005.png"
    assert not refs.skipped


def test_caption_layout_references_are_text_plus_original_text():
    assert reference_captions(caption_row("1", "a dog", original_text="a brown dog")) == ["a dog", "a brown dog"]
    assert reference_captions(caption_row("1", "a dog")) == ["a dog"]
    assert reference_captions(caption_row("1", "a dog", original_text="a dog")) == ["a dog"]
    assert reference_captions({"text": "  ", "captions": []}) == []


def test_bad_rows_are_counted_not_raised(tmp_path, caplog):
    write_shards(tmp_path, synth_rows())
    with (tmp_path / "00000" / "metadata.jsonl").open("a") as fh:
        fh.write("{not json\n" + json.dumps({"file_name": "x.png", "text": "", "key": "x"}) + "\n")
        fh.write(json.dumps(synth_rows()[0]) + "\n")
    with caplog.at_level(logging.WARNING):
        refs = read_references(tmp_path)
    assert len(refs.rows) == len(REFERENCES)
    assert refs.skipped == {"bad_row": 1, "no_caption": 1, "duplicate_key": 1}
    assert "skipped rows" in caplog.text


def test_not_a_dataset_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="metadata.jsonl"):
        read_references(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        read_predictions(tmp_path / "missing")


def test_predictions_and_matching(tmp_path):
    refs = read_references(write_shards(tmp_path / "refs", synth_rows()))
    keys = list(REFERENCES)
    rows = [caption_row(k, f"caption {k}", candidates=[f"caption {k}", "other"]) for k in keys[1:]]
    rows.append(caption_row("999999999", "no such image"))
    preds = read_predictions(write_shards(tmp_path / "preds", rows, shard_size=2))
    assert preds.rows[keys[1]] == Prediction(
        keys[1], f"caption {keys[1]}", (f"caption {keys[1]}", "other"), f"/data/in/{keys[1]}.png"
    )
    result = match(refs, preds.rows)
    assert result.keys == keys[1:]
    assert result.missing == [keys[0]] and result.extra == ["999999999"]
    assert result.summary() == {"matched": 5, "missing_predictions": 1, "extra_predictions": 1, "source_mismatch": 0}
    # A plain key -> text mapping (the --model path) matches the same way.
    assert match(refs, preds.texts()).keys == keys[1:]


def test_shifted_keys_are_flagged(tmp_path):
    """Captioning a sub-folder renumbers keys from 0: the source file names give it away."""
    refs = read_references(write_shards(tmp_path / "refs", synth_rows()))
    keys = list(REFERENCES)
    shifted = {k: Prediction(k, "x", source=f"/synth/00000/{keys[(i + 2) % 6]}.png") for i, k in enumerate(keys)}
    assert match(refs, shifted).source_mismatch == keys
    aligned = {k: Prediction(k, "x", source=f"/elsewhere/{k}.png") for k in keys}
    assert match(refs, aligned).source_mismatch == []

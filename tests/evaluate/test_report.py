import json

import pytest

from capfleet.evaluate import evaluate, format_table, write_json
from capfleet.synth.writer import generate_synthetic_dataset
from tests.evaluate.helpers import caption_row, write_shards


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    generate_synthetic_dataset(12, out, seed=3, size=32, shard_size=5, progress=False)
    refs = {}
    for meta in sorted(out.glob("*/metadata.jsonl")):
        for line in meta.read_text().splitlines():
            row = json.loads(line)
            refs[row["key"]] = (meta.parent / row["file_name"], row["captions"])
    return out, refs


def write_predictions(root, refs, keys, extra=()):
    rows = [caption_row(k, refs[k][1][0], source=str(refs[k][0])) for k in keys]
    rows += [caption_row(k, "a lonely caption") for k in extra]
    return write_shards(root, rows, shard_size=5)


def test_predictions_folder_with_scorer(synth, tmp_path, tiny_scorer):
    data, refs = synth
    keys = sorted(refs)[:10]
    preds = write_predictions(tmp_path / "preds", refs, keys, extra=["777777777"])
    results = evaluate(data, preds, tiny_scorer, tokenizer="simple", meteor=False, batch_size=4)
    assert results["matching"] == {
        "matched": 10,
        "missing_predictions": 2,
        "extra_predictions": 1,
        "source_mismatch": 0,
    }
    assert results["references"]["images"] == 12
    assert results["caption_metrics"]["BLEU-4"] == pytest.approx(1.0, abs=1e-6)
    assert 0 <= results["clip"]["CLIPScore"] <= 2.5 and 0 <= results["clip"]["RefCLIPScore"] <= 2.5
    assert results["clip"]["images"] == 10
    assert set(results["retrieval"]) == {"references", "predictions"}
    assert all(0 <= v <= 1 for k, v in results["retrieval"]["references"].items() if "R@" in k)

    table = format_table(results)
    for needle in ("10 matched, 2 missing", "BLEU-4", "CIDEr", "CLIPScore", "references i2t", "predictions t2i"):
        assert needle in table
    path = write_json(results, tmp_path / "out" / "eval.json")
    assert json.loads(path.read_text())["caption_metrics"]["METEOR"] is None


def test_prediction_mapping_matches_folder_mode(synth, tmp_path):
    """The --model path hands a key -> caption dict straight in; scores equal the folder path's."""
    data, refs = synth
    keys = sorted(refs)
    mapping = {k: refs[k][1][0] if i % 2 else "a picture" for i, k in enumerate(keys)}
    rows = [caption_row(k, t, source=str(refs[k][0])) for k, t in mapping.items()]
    from_dir = evaluate(data, write_shards(tmp_path / "p", rows), tokenizer="simple", meteor=False)
    from_map = evaluate(data, predictions=mapping, tokenizer="simple", meteor=False)
    assert from_map["caption_metrics"] == from_dir["caption_metrics"]
    assert "clip" not in from_map and "retrieval" not in from_map
    assert "CLIPScore" not in format_table(from_map)
    with pytest.raises(ValueError, match="not both"):
        evaluate(data, tmp_path / "p", predictions=mapping)


def test_scorer_only_measures_retrieval_and_same_folder_warns(synth, tiny_clip):
    data, _ = synth
    results = evaluate(data, scorer=str(tiny_clip), device="cpu")
    assert "caption_metrics" not in results and "references" in results["retrieval"]
    assert results["scorer"] == str(tiny_clip)
    same = evaluate(data, data, tokenizer="simple", meteor=False)
    assert any("same folder" in w for w in same["warnings"])


def test_synth_references_give_object_and_relation_accuracy(synth):
    """Ground-truth captions are right about every scene; the same captions with shapes renamed are not,
    though they keep most n-grams (CIDEr stays well above zero)."""
    data, refs = synth
    truth = {k: refs[k][1][0] for k in refs}
    right = evaluate(data, predictions=truth, tokenizer="simple", meteor=False)
    assert right["scene_accuracy"]["object_accuracy"] == 1.0
    assert right["scene_accuracy"]["images"] == 12
    assert right["scene_accuracy"]["relation_accuracy"] in (1.0, None)
    table = format_table(right)
    assert "object acc.  1.0000" in table and "relation acc." in table

    renamed = {k: " ".join({"circle": "star", "star": "circle"}.get(w, w) for w in t.split()) for k, t in truth.items()}
    wrong = evaluate(data, predictions=renamed, tokenizer="simple", meteor=False)
    assert wrong["scene_accuracy"]["object_accuracy"] < 1.0
    assert wrong["caption_metrics"]["CIDEr"] > 0.5


def test_references_without_scenes_give_no_scene_accuracy(tmp_path):
    from tests.evaluate.helpers import REFERENCES, synth_rows

    data = write_shards(tmp_path / "refs", synth_rows())  # "scene": "{}" is not a scene graph
    results = evaluate(data, predictions={k: c[0] for k, c in REFERENCES.items()}, tokenizer="simple", meteor=False)
    assert "scene_accuracy" not in results and "object acc." not in format_table(results)

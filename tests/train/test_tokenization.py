from transformers import AutoImageProcessor, AutoTokenizer

from capfleet.train.tokenization import build_image_processor, build_tokenizer
from tests.train.helpers import draw

CAPTIONS = ["A red circle left of a blue square.", "a green triangle, above the cat's hat!", "Don't stop?"]


def test_special_ids_and_clean_decoding(tmp_path):
    tok = build_tokenizer(CAPTIONS)
    assert [tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id] == [0, 1, 2, 3]
    ids = tok(CAPTIONS)["input_ids"]
    assert all(seq[0] == 1 and seq[-1] == 2 for seq in ids)
    assert tok.batch_decode(ids, skip_special_tokens=True) == [
        "a red circle left of a blue square.",
        "a green triangle, above the cat's hat!",
        "don't stop?",
    ]
    assert tok.decode(tok("a purple circle")["input_ids"], skip_special_tokens=False) == ("[BOS] a [UNK] circle [EOS]")
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again(CAPTIONS)["input_ids"] == ids and again.pad_token_id == 0
    padded = again(CAPTIONS, padding=True)["input_ids"]
    assert padded[2][-1] == 0  # right padding with [PAD]


def test_min_freq_and_deterministic_ids():
    tok = build_tokenizer(["a red square", "a red circle"], min_freq=2)
    assert set(tok.get_vocab()) == {"[PAD]", "[BOS]", "[EOS]", "[UNK]", "a", "red"}
    assert build_tokenizer(CAPTIONS).get_vocab() == build_tokenizer(list(reversed(CAPTIONS))).get_vocab()


def test_image_processor_round_trip(tmp_path):
    build_image_processor(48).save_pretrained(tmp_path)
    proc = AutoImageProcessor.from_pretrained(tmp_path)
    px = proc(images=draw("red", "square", 20, 0), return_tensors="pt")["pixel_values"]
    assert px.shape == (1, 3, 48, 48)
    assert float(px.min()) >= -1.0 and float(px.max()) <= 1.0

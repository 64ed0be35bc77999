import torch

from capfleet.train.negatives import relation_map, swap_one_token, swap_relations


def test_one_content_token_is_swapped_with_the_next_rows_token():
    ids = torch.tensor([[1, 5, 6, 7, 2, 0], [1, 8, 6, 9, 2, 0], [1, 5, 2, 0, 0, 0]])
    mask = (ids != 0).long()
    negatives, negative_mask = swap_one_token(ids, mask, torch.Generator().manual_seed(0))
    # row 1 vs row 0: positions 1 and 3 differ; exactly one of them takes row 0's token
    changed = (negatives[1] != ids[1]).nonzero().flatten().tolist()
    assert len(changed) == 1 and changed[0] in (1, 3)
    assert negatives[1, changed[0]] == ids[0, changed[0]]
    assert negative_mask[1].tolist() == mask[1].tolist()
    # BOS and EOS never move
    assert (negatives[:, 0] == 1).all() and negatives[1, 4] == 2
    # row 0 shares no differing content position with row 2: it gets row 2's caption whole
    assert negatives[0].tolist() == ids[2].tolist() and negative_mask[0].tolist() == mask[2].tolist()


def test_training_with_hard_negatives_lowers_the_contrastive_loss(shapes_dir, tmp_path):
    import json

    from capfleet.train.trainer import TrainConfig, train
    from tests.train.test_trainer import FAST

    cfg = TrainConfig(
        data_dir=str(shapes_dir), output_dir=str(tmp_path / "m"), **FAST, max_steps=40, hard_negatives=True
    )
    train(cfg)
    log = [json.loads(line) for line in (tmp_path / "m" / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["contrastive_loss"] < 0.7 * log[0]["contrastive_loss"]


def test_relation_words_turn_to_their_opposites_and_rows_without_one_are_flagged():
    from capfleet.train.tokenization import build_tokenizer

    captions = ["a red circle to the left of a star", "a star above a blue circle", "a red circle and a blue star"]
    tokenizer = build_tokenizer([*captions, "right below"])
    batch = tokenizer(captions, padding=True, return_tensors="pt")["input_ids"]
    swapped, has = swap_relations(batch, relation_map(tokenizer))
    texts = tokenizer.batch_decode(swapped, skip_special_tokens=True)
    assert texts == ["a red circle to the right of a star", "a star below a blue circle", captions[2]]
    assert has.tolist() == [True, True, False]

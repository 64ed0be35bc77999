import logging

import pytest

from capfleet.evaluate import caption_metrics
from capfleet.evaluate.caption_metrics import (
    METRICS,
    caption_scores,
    java_available,
    most_frequent_caption_baseline,
    simple_tokenize,
)
from capfleet.synth.scene import describe, sample_scene
from tests.evaluate.helpers import REFERENCES

PERFECT = {k: refs[0] for k, refs in REFERENCES.items()}
WRONG = {k: "a photograph of something" for k in REFERENCES}


def fast(references, predictions, **kw):
    return caption_scores(references, predictions, tokenizer="simple", meteor=False, **kw)


def test_identical_predictions_score_perfectly_and_wrong_ones_low():
    perfect, wrong = fast(REFERENCES, PERFECT), fast(REFERENCES, WRONG)
    assert list(perfect) == list(METRICS)
    assert perfect["BLEU-4"] == pytest.approx(1.0, abs=1e-6)
    assert perfect["BLEU-1"] == pytest.approx(1.0, abs=1e-6)
    assert perfect["ROUGE-L"] == pytest.approx(1.0)
    assert perfect["CIDEr"] > 2.0
    assert perfect["METEOR"] is None  # not asked for
    assert wrong["BLEU-4"] < 0.01 and wrong["ROUGE-L"] < 0.3 and wrong["CIDEr"] < 0.1


def test_most_frequent_caption_baseline_is_far_below_perfect():
    """Synth-like references: a constant caption shares words with many images but gets little CIDEr."""
    import numpy as np

    refs = {}
    for i in range(40):
        rng = np.random.default_rng([7, i])
        refs[f"{i:09d}"] = describe(sample_scene(rng), rng)
    perfect = fast(refs, {k: cs[0] for k, cs in refs.items()})
    baseline = fast(refs, most_frequent_caption_baseline(refs))
    assert baseline["CIDEr"] < 0.3 * perfect["CIDEr"]
    assert baseline["BLEU-4"] < perfect["BLEU-4"]


def test_extra_references_are_ignored_but_unreferenced_predictions_are_errors():
    subset = {k: PERFECT[k] for k in list(PERFECT)[:3]}
    assert fast(REFERENCES, subset)["BLEU-4"] == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(KeyError, match="no reference"):
        fast(REFERENCES, {"nope": "a dog"})
    with pytest.raises(ValueError, match="no predictions"):
        fast(REFERENCES, {})


def test_empty_prediction_scores_zero_without_crashing():
    scores = fast(REFERENCES, {**PERFECT, "000000000": ""})
    assert 0 < scores["CIDEr"] < fast(REFERENCES, PERFECT)["CIDEr"]


def test_simple_tokenizer_approximates_ptb():
    assert simple_tokenize("A man's RED hat, on the left.") == "a man's red hat on the left"
    assert simple_tokenize("  ...  ") == ""


def test_without_java_meteor_is_none_and_the_rest_still_computed(monkeypatch, caplog):
    monkeypatch.setattr(caption_metrics, "java_available", lambda: False)
    with caplog.at_level(logging.WARNING):
        scores = caption_scores(REFERENCES, PERFECT)
    assert scores["METEOR"] is None
    assert scores["BLEU-4"] == pytest.approx(1.0, abs=1e-6) and scores["CIDEr"] > 2.0
    assert "install Java (apt-get install default-jre-headless) for METEOR" in caplog.text


@pytest.mark.skipif(not java_available(), reason="needs Java (apt-get install default-jre-headless)")
def test_ptb_tokenizer_and_meteor_with_java():
    """One PTB and one METEOR JVM (~10 s on a busy 2-core box: METEOR loads its paraphrase table)."""
    shouted = {k: refs[0].upper().replace(" on ", ", on ") + "." for k, refs in REFERENCES.items()}
    mixed = {**shouted, "000000001": WRONG["000000001"]}
    scores = caption_scores(REFERENCES, mixed, tokenizer="ptb", meteor=True)
    assert scores["METEOR"] is not None and 0.6 < scores["METEOR"] < 1.0
    # PTB lowercases and drops punctuation, so the five shouted captions still match exactly
    assert scores["BLEU-1"] > 0.8


def test_ptb_failure_falls_back_to_simple_tokenizer(monkeypatch, caplog):
    """PTBTokenizer writes a temp file inside site-packages; a read-only install must not lose the metrics."""

    def broken(texts):
        raise PermissionError("read-only site-packages")

    monkeypatch.setattr(caption_metrics, "_ptb_tokenize", broken)
    with caplog.at_level(logging.WARNING):
        tokenized = caption_metrics.tokenize({"a": ["A Red circle."]}, use_ptb=True)
    assert tokenized == {"a": ["a red circle"]}
    assert "PTBTokenizer failed" in caplog.text

"""COCO caption metrics (BLEU-1..4, METEOR, ROUGE-L, CIDEr-D) via ``pycocoevalcap``, the code papers report with.

Like ``COCOEvalCap``: every text is PTB-tokenized (lowercase, punctuation dropped) and all scorers see the
tokenized text. PTBTokenizer and METEOR are Java programs; without Java, tokenization falls back to a close
pure-Python approximation and METEOR is ``None``, so the other numbers are still available.
Scores are corpus-level, unscaled (BLEU/METEOR/ROUGE-L in [0, 1]; CIDEr-D in [0, 10], ~1 for good models).
"""

from __future__ import annotations

import functools
import logging
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Mapping

log = logging.getLogger(__name__)

METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")
JAVA_HINT = "install Java (apt-get install default-jre-headless) for METEOR"
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


@functools.cache
def java_available() -> bool:
    """True when ``java`` runs (a broken JRE on PATH counts as missing)."""
    if shutil.which("java") is None:
        return False
    try:
        return subprocess.run(["java", "-version"], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _clean(text: str) -> str:
    """One line without ``|`` : PTB and METEOR speak a line protocol with ``|||`` as field separator."""
    return " ".join(text.replace("|", " ").split())


def simple_tokenize(text: str) -> str:
    """Fallback for PTBTokenizer: lowercase words, punctuation dropped ("Man's hat." -> "man's hat")."""
    return " ".join(_WORD.findall(text.lower()))


def _ptb_tokenize(texts: dict) -> dict:
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tokenized = PTBTokenizer().tokenize({key: [{"caption": t} for t in values] for key, values in texts.items()})
    if any(len(tokenized.get(key, ())) != len(values) for key, values in texts.items()):
        raise RuntimeError("PTBTokenizer returned a different number of lines than it was given")
    return tokenized


def tokenize(texts: dict, use_ptb: bool) -> dict:
    """Tokenize {id: [text, ...]} in one JVM start; falls back to ``simple_tokenize`` if PTB fails."""
    texts = {key: [_clean(t) for t in values] for key, values in texts.items()}
    if use_ptb:
        try:
            return _ptb_tokenize(texts)
        except Exception as exc:  # e.g. site-packages not writable (PTB writes its temp file there)
            log.warning("PTBTokenizer failed (%s); using the simple tokenizer", exc)
    return {key: [simple_tokenize(t) for t in values] for key, values in texts.items()}


def _meteor(gts: dict, res: dict) -> float | None:
    from pycocoevalcap.meteor.meteor import Meteor

    try:
        scorer = Meteor()
        try:
            return float(scorer.compute_score(gts, res)[0])
        finally:
            del scorer  # its __del__ stops the JVM
    except Exception as exc:
        log.warning("METEOR failed (%s: %s); reported as unavailable", type(exc).__name__, exc)
        return None


def most_frequent_caption_baseline(references: Mapping[str, list[str]]) -> dict[str, str]:
    """The trivial baseline: the most frequent reference caption, predicted for every key."""
    constant = Counter(text for texts in references.values() for text in texts).most_common(1)[0][0]
    return dict.fromkeys(references, constant)


def caption_scores(
    references: Mapping[str, list[str]],
    predictions: Mapping[str, str],
    *,
    tokenizer: str = "auto",
    meteor: bool = True,
) -> dict[str, float | None]:
    """Corpus scores of ``predictions`` (key -> caption) against ``references`` (key -> captions).

    Every prediction key needs references; references without a prediction are ignored (the caller reports
    them). ``tokenizer``: "auto" (PTB when Java runs), "ptb" or "simple". ``meteor=False`` skips METEOR
    (its JVM loads a 60 MB paraphrase table: ~10 s). CIDEr's IDF comes from these references, so it is only
    meaningful over many images (with one image it is 0).
    """
    try:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.rouge.rouge import Rouge
    except ImportError as exc:
        raise ImportError("caption metrics need pycocoevalcap: pip install pycocoevalcap") from exc
    if tokenizer not in ("auto", "ptb", "simple"):
        raise ValueError(f"tokenizer must be 'auto', 'ptb' or 'simple', got {tokenizer!r}")
    if not predictions:
        raise ValueError("no predictions to score")
    keys = sorted(predictions)
    unknown = [key for key in keys if not any(t.strip() for t in references.get(key, ()))]
    if unknown:
        raise KeyError(f"{len(unknown)} predictions have no reference caption, e.g. {unknown[:3]}")
    java = java_available()
    if (meteor or tokenizer != "simple") and not java:
        log.warning("Java not found (METEOR unavailable, simple tokenizer used): %s", JAVA_HINT)
    ids = {key: i for i, key in enumerate(keys)}  # PTB keeps order per id; ints keep the JVM input small
    texts = {("ref", ids[k]): [t for t in references[k] if t.strip()] for k in keys}
    texts.update({("pred", ids[k]): [predictions[k]] for k in keys})
    tokenized = tokenize(texts, use_ptb=java and tokenizer != "simple")
    gts = {i: tokenized[("ref", i)] for i in ids.values()}
    res = {i: tokenized[("pred", i)] for i in ids.values()}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    scores: dict[str, float | None] = {f"BLEU-{n}": float(b) for n, b in enumerate(bleu, start=1)}
    scores["METEOR"] = _meteor(gts, res) if meteor and java else None
    scores["ROUGE-L"] = float(Rouge().compute_score(gts, res)[0])
    scores["CIDEr"] = float(Cider().compute_score(gts, res)[0])
    return {name: scores[name] for name in METRICS}

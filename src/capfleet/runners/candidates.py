"""A batch of decoded images -> clean, scored candidates: prompts, engine call, hygiene, re-sampling.

Every engine and every entry point goes through here (`capfleet caption`, `capfleet.load(...).caption`
and the service built on it), so prompts, hygiene and ranking behave the same whether the captions
come from transformers, vLLM or an HTTP endpoint, and whoever asked for them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from capfleet.config import RunConfig
from capfleet.decoding import DecodingOptions
from capfleet.models.engines.base import PartialBatchError, derive_seed
from capfleet.models.prompts import PromptFieldMissing, render_prompt
from capfleet.protocols import Captioner, ImageEncoding, Scorer
from capfleet.ranking import best_candidate
from capfleet.sample import Sample
from capfleet.stages.hygiene import EMPTY, Cleaned, HygieneOptions, clean_candidates

RESAMPLED, FLAGGED = "images_resampled", "images_flagged"
ONLY_EMPTY = "caption failed: the model produced only empty captions"


@dataclass
class Captioned:
    """One image's outcome: its candidates with scores, or the error that becomes its record."""

    candidates: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    chunked: list[bool] = field(default_factory=list)  # per candidate: scored by sentence chunks
    flags: list[str] = field(default_factory=list)  # why every candidate was degenerate; [] when clean
    error: str | None = None
    embeddings: tuple | None = None  # --embeddings: (image, chosen caption) scorer embeddings


def resample_seed(seed: int | None, key: str, attempt: int) -> int | None:
    """A re-sample's seed: a function of the run seed, the image's key and the attempt only
    (None, unseeded, when the call itself was unseeded)."""
    return None if seed is None else derive_seed(seed, key, "resample", attempt)


@dataclass(frozen=True)
class CandidateSettings:
    """What shapes an image's candidates beyond decoding: how many, hygiene, seed, prompt, embeddings."""

    candidates: int
    hygiene: HygieneOptions
    seed: int | None = 0
    prompt: str | None = None  # a --prompt template: its fields come from each image's json
    embeddings: bool = False

    @classmethod
    def of_run(cls, config: RunConfig) -> CandidateSettings:
        return cls(config.candidates, config.hygiene_options(), config.seed, config.prompt, config.embeddings)


class CandidateMaker:
    """Holds the models and the settings; `make` turns one batch into `Captioned` results."""

    def __init__(
        self, captioner: Captioner, scorer: Scorer | None, settings: CandidateSettings, decoding: DecodingOptions
    ):
        self.captioner = captioner
        self.scorer = scorer
        self.settings = settings
        self.decoding = decoding
        self.hygiene = settings.hygiene
        # Re-sampling must sample: beam search would return the same degenerate captions again.
        self.resample_decoding = DecodingOptions("sample", decoding.top_p, decoding.max_new_tokens)
        self.counts: Counter = Counter()  # hygiene kinds, re-sampled and flagged images

    def make(
        self, samples: list[Sample], seeds: list[int | None], prompts: list[str | None] | None = None
    ) -> list[Captioned]:
        """Results in sample order; `seeds` holds each sample's own seed (`sampling.image_seed`).
        `prompts`: the prompt of each sample as it is; by default rendered from the settings' template."""
        results: list[Captioned | None] = [None] * len(samples)
        if prompts is None:
            prompts = [self._render(sample, results, index) for index, sample in enumerate(samples)]
        live = [i for i, result in enumerate(results) if result is None]
        images, live_prompts = [samples[i].image for i in live], [prompts[i] for i in live]
        encoding = self.captioner.encode(images) if images else None
        generated, errors = self._generate(images, live_prompts, [seeds[i] for i in live], encoding=encoding)
        texts = {}
        for position, index in enumerate(live):
            if position in errors:
                results[index] = Captioned(error=f"caption failed: {errors[position]}")
            else:
                texts[index] = generated[position]
        for index, result in self._clean(samples, prompts, texts).items():
            results[index] = result
        self._score(samples, results, encoding, live)
        return results

    def _render(self, sample: Sample, results: list, index: int) -> str | None:
        try:
            return render_prompt(self.settings.prompt, sample.item, sample.fields)
        except PromptFieldMissing as exc:
            results[index] = Captioned(error=f"prompt failed: {exc.args[0]}")
            return None

    def _generate(
        self,
        images: list,
        prompts: list[str | None],
        seeds: list[int | None],
        options: DecodingOptions | None = None,
        encoding: ImageEncoding | None = None,
    ):
        """Candidates per image and {position: error}. Engines that take a prompt per image get them all
        at once; the others are called once per distinct prompt (`encoding`: the captioner's of `images`)."""
        options = options or self.decoding
        candidates: list[list[str] | None] = [None] * len(images)
        errors: dict[int, str] = {}
        if self.captioner.per_image_prompts or len(set(prompts)) <= 1:
            groups = {None: list(range(len(images)))}
        else:
            groups: dict = {}
            for index, prompt in enumerate(prompts):
                groups.setdefault(prompt, []).append(index)
        for indexes in groups.values():
            group_prompts = [prompts[i] for i in indexes]
            prompt = group_prompts if self.captioner.per_image_prompts else group_prompts[0]
            group_seeds = [seeds[i] for i in indexes]
            try:
                texts = self.captioner.generate(
                    [images[i] for i in indexes],
                    self.settings.candidates,
                    prompt,
                    None if None in group_seeds else group_seeds,  # None: an unseeded call samples freely
                    options,
                    None if encoding is None else encoding.select(indexes),
                )
            except PartialBatchError as exc:
                texts = exc.candidates
                errors.update({indexes[i]: message for i, message in exc.errors.items()})
            for index, row in zip(indexes, texts, strict=True):
                candidates[index] = row
        return candidates, errors

    def _clean(self, samples: list[Sample], prompts: list[str | None], texts: dict[int, list[str]]) -> dict:
        """{sample index: Captioned} for the generated `texts`. Images whose candidates all fail hygiene are
        sampled again, all of a batch's in one call per attempt: each draws from its own seed, so its
        captions are those it would get alone."""
        if not self.hygiene.enabled:
            return {i: Captioned(row) if row else Captioned(error=ONLY_EMPTY) for i, row in texts.items()}
        first = {i: self._check(row) for i, row in texts.items()}
        latest = dict(first)
        for attempt in range(1, self.hygiene.resample_attempts + 1):
            again = [i for i, cleaned in latest.items() if cleaned.flags]
            if not again:
                break
            self.counts[RESAMPLED] += len(again) if attempt == 1 else 0
            seeds = [resample_seed(self.settings.seed, samples[i].key, attempt) for i in again]
            images, again_prompts = [samples[i].image for i in again], [prompts[i] for i in again]
            retried, errors = self._generate(images, again_prompts, seeds, self.resample_decoding)
            for position, index in enumerate(again):
                latest[index] = self._check([] if position in errors else retried[position])
        return {i: self._outcome(first[i], latest[i]) for i in texts}

    def _check(self, texts: list[str]) -> Cleaned:
        cleaned = clean_candidates(texts, self.hygiene) if texts else Cleaned([], [EMPTY], Counter({EMPTY: 1}))
        self.counts.update(cleaned.counts)
        return cleaned

    def _outcome(self, first: Cleaned, last: Cleaned) -> Captioned:
        """The last sample when it passed; else the first one's candidates, flagged (an error when it had none)."""
        if not last.flags:
            return Captioned(last.candidates)
        if not first.candidates:
            return Captioned(error=ONLY_EMPTY)
        self.counts[FLAGGED] += 1
        return Captioned(first.candidates, flags=first.flags)

    def _score(
        self, samples: list[Sample], results: list[Captioned], encoding: ImageEncoding | None, encoded: list[int]
    ) -> None:
        """Scores the error-free results; `encoding` holds the captioner's encoding of the samples at `encoded`."""
        ranked = [i for i, result in enumerate(results) if result.error is None]
        if self.scorer is None or not ranked:
            return
        if encoding is not None:
            position = {index: row for row, index in enumerate(encoded)}
            encoding = encoding.select([position[i] for i in ranked])
        scored = self.scorer.score(
            [samples[i].image for i in ranked],
            [results[i].candidates for i in ranked],
            embeddings=self.settings.embeddings,
            encoding=encoding,
        )
        for row, (index, row_scores, row_chunked) in enumerate(zip(ranked, scored.scores, scored.chunked, strict=True)):
            results[index].scores, results[index].chunked = row_scores, row_chunked
            if self.settings.embeddings and row_scores:
                best = best_candidate(row_scores)
                results[index].embeddings = (scored.image_embeds[row], scored.text_embeds[row][best])

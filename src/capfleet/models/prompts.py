"""`--prompt` templates: one prompt per image from the image's own fields.

`{original_text}` grounds a VLM in the caption an image came with (its alt text), which reduces
hallucination; `{key}` and `{source}` are always there, and any other `{name}` is a field of the
image's json (its row in an imagefolder metadata.jsonl, or a `name.json` beside it, as
img2dataset writes). `{ocr_text}` is the text the OCR filter read in the image (the filter runs
whenever a prompt names it). Literal braces are written `{{` and `}}`.
"""

from __future__ import annotations

import string

from capfleet.config import ConfigError
from capfleet.sample import Item

ITEM_FIELDS = ("original_text", "key", "source")
LOADER_FIELDS = ("ocr_text",)  # added by filters in the reader threads, after listing


class PromptFieldMissing(KeyError):
    """An image whose json lacks a field the prompt names: that image's error record."""


def prompt_fields(template: str) -> list[str]:
    """The field names a template uses, or a ConfigError saying what is wrong with it."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(f"--prompt is not a valid template ({exc}): write {{{{ and }}}} for literal braces") from None
    names = []
    for _, name, _, _ in parsed:
        if name is None:
            continue
        if not name.isidentifier():
            raise ConfigError(f"--prompt field {{{name}}} is not a field name: use {{original_text}} or a json field")
        names.append(name)
    return list(dict.fromkeys(names))


def item_values(item: Item) -> dict[str, str]:
    values = {name: str(value) for name, value in (item.fields or {}).items()}
    values.update(original_text=item.original_text or "", key=item.key, source=item.source)
    return values


def render_prompt(template: str | None, item: Item, loaded: dict | None = None) -> str | None:
    """The prompt for one image; a static prompt (no fields) is returned as it is.

    `loaded`: fields the loader's filters found in the image (`ocr_text`).
    """
    if not template or not prompt_fields(template):
        return template
    values = {**item_values(item), **{name: str(value) for name, value in (loaded or {}).items()}}
    try:
        return template.format_map(values)
    except KeyError as exc:
        raise PromptFieldMissing(f"prompt field {{{exc.args[0]}}} is not in this image's json") from None


def check_prompt_fields(template: str | None, first: Item | None) -> None:
    """Fail before the run starts when the prompt names a field the first image does not have."""
    if not template:
        return
    names = prompt_fields(template)
    if first is None:
        return
    available = item_values(first)
    unknown = [name for name in names if name not in available and name not in LOADER_FIELDS]
    if unknown:
        json_fields = sorted(set(available) - set(ITEM_FIELDS))
        offered = ", ".join([*ITEM_FIELDS, *json_fields])
        raise ConfigError(f"unknown prompt field {{{unknown[0]}}}: the first image ({first.source}) has {offered}")

"""docs/architecture.md's "add a format" example is real code: registered as the page says, it runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from capfleet import plugins
from capfleet.cli import app
from capfleet.merge import merge_shards
from tests.image_zoo import write_noise_images

ARCHITECTURE = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"
MODULE = "capfleet_docs_jsonl_format"
runner = CliRunner()


def documented_format() -> str:
    """The page's one python block that defines the jsonl format, as written."""
    blocks = re.findall(r"^```python\n(.*?)^```$", ARCHITECTURE.read_text(encoding="utf-8"), flags=re.S | re.M)
    (block,) = [block for block in blocks if 'NAME = "jsonl"' in block]
    return block


def test_the_documented_jsonl_format_writes_resumes_merges_and_refuses(tmp_path, monkeypatch):
    (tmp_path / "plugin").mkdir()
    (tmp_path / "plugin" / f"{MODULE}.py").write_text(documented_format(), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path / "plugin"))
    monkeypatch.setitem(plugins._MODULES["format"], "jsonl", MODULE)  # the page's step 2
    write_noise_images(tmp_path / "imgs", 5)
    (tmp_path / "imgs" / "img-001.txt").write_text("a kept caption")
    out = tmp_path / "out"

    def caption(output: Path, *more: str):
        args = ["caption", str(tmp_path / "imgs"), "-o", str(output), "--captioner", "none", "--shard-size", "4"]
        return runner.invoke(app, [*args, "--format", "jsonl", *more])

    first = caption(out)
    assert first.exit_code == 0, first.output
    assert sorted(path.name for path in out.iterdir()) == ["00000.jsonl", "00001.jsonl", "_capfleet"]
    rows = [json.loads(line) for line in (out / "00000.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [row["key"] for row in rows] == ["000000000", "000000001", "000000002", "000000003"]
    assert rows[1]["text"] == "a kept caption" and rows[1]["source"] == str(tmp_path / "imgs" / "img-001.jpg")

    again = caption(out)
    assert again.exit_code == 0 and "skipped (already done): 5" in again.output

    merged, count = merge_shards(out)
    merged_rows = [json.loads(line) for line in merged.read_text(encoding="utf-8").splitlines()]
    assert count == 5 and merged_rows[4]["file_name"] == "00001.jsonl:000000004"

    refused = caption(tmp_path / "txt", "--txt", "best")
    assert refused.exit_code == 2 and "--txt needs --format imagefolder" in refused.output
    assert not (tmp_path / "txt").exists()

"""The worker image's torch build exists: Dockerfile, .ci/run, pyproject and docs against docker/torch_builds.toml.

No Docker needed: a torch version or CUDA index that PyTorch does not publish fails here, in CI,
instead of at `pip install` in an image build.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the dev extra installs tomli on 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
BUILDS = tomllib.loads((ROOT / "docker" / "torch_builds.toml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()
DATAFLOW_DOC = (ROOT / "docs" / "dataflow.md").read_text()
TORCH_URL = re.compile(re.escape(BUILDS["index"]) + r"/(\w+)")


def dockerfile_args(text: str) -> dict[str, str]:
    """Default values of every `ARG NAME=value` line (quotes stripped)."""
    return {m[1]: m[2].strip().strip('"') for m in re.finditer(r"^ARG (\w+)=(.*)$", text, re.MULTILINE)}


ARGS = dockerfile_args(DOCKERFILE)
TORCH_VERSION = ARGS["TORCH_VERSION"]
VARIANT = ARGS["TORCH_INDEX_URL"].removeprefix(BUILDS["index"] + "/")


def _published(version: str) -> list[str]:
    assert version in BUILDS["torch"], f"torch {version} is not in docker/torch_builds.toml: add its published builds"
    return BUILDS["torch"][version]["variants"]


def _capability(text: str) -> tuple[int, int]:
    major, minor = text.split(".")
    return int(major), int(minor)


def test_the_default_index_is_a_published_cuda_build_of_the_pinned_torch():
    assert ARGS["TORCH_INDEX_URL"].startswith(BUILDS["index"] + "/"), ARGS["TORCH_INDEX_URL"]
    assert VARIANT in _published(TORCH_VERSION), f"torch {TORCH_VERSION} has no {VARIANT} build"
    assert "cuda" in BUILDS["variants"][VARIANT], f"{VARIANT} is not a CUDA build"


def test_the_image_python_has_wheels_of_that_torch():
    assert ARGS["PYTHON_VERSION"] in BUILDS["torch"][TORCH_VERSION]["python"]


@pytest.mark.parametrize("gpu", sorted(BUILDS["gpus"]))
def test_the_default_build_has_kernels_for_every_dataflow_gpu(gpu):
    major, minor = _capability(BUILDS["gpus"][gpu])
    kernels = [_capability(cc) for cc in BUILDS["variants"][VARIANT]["compute_capabilities"]]
    assert any(k_major == major and k_minor <= minor for k_major, k_minor in kernels), (gpu, VARIANT)


def test_every_torch_index_named_in_the_dockerfile_and_dataflow_docs_is_published():
    named = set(TORCH_URL.findall(DOCKERFILE)) | set(TORCH_URL.findall(DATAFLOW_DOC))
    assert VARIANT in named and {"cpu", "cu130"} <= named  # the launcher's CPU build and the R580+ option
    assert named <= set(_published(TORCH_VERSION)), named - set(_published(TORCH_VERSION))


def test_the_dockerfile_header_states_its_defaults():
    for name in ("PYTHON_VERSION", "TORCH_VERSION", "TORCH_INDEX_URL"):
        assert re.search(rf"^#\s+{name}\s+{re.escape(ARGS[name])}\s", DOCKERFILE, re.MULTILINE), name


def test_ci_docs_and_pyproject_pin_the_torch_the_image_builds():
    ci_pins = re.findall(r"torch==([\w.+]+)", (ROOT / ".ci" / "run").read_text())
    doc_pins = re.findall(r"torch==([\w.+]+)", DATAFLOW_DOC)
    assert ci_pins and doc_pins and set(ci_pins) | set(doc_pins) == {TORCH_VERSION}
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    torch_req = next(Requirement(r) for r in pyproject["project"]["dependencies"] if Requirement(r).name == "torch")
    assert torch_req.specifier.contains(TORCH_VERSION), torch_req


def test_the_table_is_consistent():
    for version, build in BUILDS["torch"].items():
        assert set(build["variants"]) <= set(BUILDS["variants"]), version
    for name, variant in BUILDS["variants"].items():
        assert name == "cpu" or f"cu{variant['cuda'].replace('.', '')}" == name

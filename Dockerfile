# capfleet worker image: the container that Apache Beam runs capfleet's shard processor in on
# Dataflow GPU workers (and on Flink or Spark through the portable runner). It holds CUDA PyTorch,
# capfleet with the `beam` and `gcs` extras, the Beam SDK that the launcher uses, the Beam SDK
# harness boot entrypoint, and (by default) the default captioner and scorer weights.
#
# Build from the repository root; docs/dataflow.md walks through build, push and launch:
#   gcloud builds submit --tag REGION-docker.pkg.dev/PROJECT/REPO/capfleet-worker:TAG .
#   docker build -t REGION-docker.pkg.dev/PROJECT/REPO/capfleet-worker:TAG .
#
# The launcher (the machine that runs `capfleet caption ... --runner beam`) must use the same
# Python minor version, the same apache-beam version and the same capfleet checkout as this
# image: Beam pickles the pipeline there and unpickles it here.
#
# Build arguments (all optional):
#   PYTHON_VERSION   3.11     the launcher's Python major.minor
#   BEAM_VERSION     2.77.0   the launcher's apache-beam
#   TORCH_VERSION    2.13.0   the torch that capfleet is tested with
#   TORCH_INDEX_URL  https://download.pytorch.org/whl/cu126   which CUDA build of torch (see below);
#                    https://download.pytorch.org/whl/cu130 where every worker has an R580+ driver
#   (docker/torch_builds.toml lists the builds each torch version has; CI checks these defaults.)
#   CAPFLEET_EXTRAS  beam,gcs extras to install (add s3 for s3:// inputs or outputs)
#   MODELS           Hugging Face hub ids, space-separated, baked into the image's HF cache;
#                    "" bakes nothing
#   HUB_OFFLINE      1        workers never contact the hub (HF_HUB_OFFLINE); use 0 with MODELS=""

ARG PYTHON_VERSION=3.11
ARG BEAM_VERSION=2.77.0

# The official Beam SDK image of the same Beam and Python versions supplies the worker boot
# entrypoint: with the defaults this is
#   COPY --from=apache/beam_python3.11_sdk:2.77.0 /opt/apache/beam /opt/apache/beam
# (a named stage, because COPY --from does not expand build arguments).
FROM apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION} AS beam_sdk

# A plain python image, neither a CUDA nor a conda one: the CUDA builds of PyTorch bring their
# own CUDA runtime, cuBLAS and cuDNN as pip packages, the NVIDIA driver always comes from the
# host, and python:X.Y is exactly the Python minor version the launcher has to match.
FROM python:${PYTHON_VERSION}-slim-bookworm

ARG BEAM_VERSION
ARG TORCH_VERSION=2.13.0
# CUDA 12.6, PyTorch's "legacy" build (torch 2.12 and 2.13 publish cu126, cu130 and cu132, no
# cu128): its user-space libraries run on any NVIDIA driver from R525 on (CUDA minor-version
# compatibility), which covers what Dataflow's `install-nvidia-driver` installs (Dataflow documents
# driver >= 525 and CUDA >= 12.0 for L4 workers, and does not pin the version), and it has kernels
# for T4 (compute capability 7.5) and Ampere (8.6), which L4 (8.9) runs. The cu130 build (also the
# plain PyPI wheel of torch 2.13.0) needs an R580 or newer driver: use it only where workers have one.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126
ARG CAPFLEET_EXTRAS=beam,gcs
ARG MODELS="Salesforce/blip-image-captioning-base openai/clip-vit-base-patch32"
ARG HUB_OFFLINE=1

# The NVIDIA driver is never in the image. Hosts that mount it under /usr/local/nvidia (as
# Container-Optimized OS GPU hosts do) are covered by the same PATH and LD_LIBRARY_PATH entries
# that the nvidia/cuda images carry; the NVIDIA container runtime (Docker on your own GPU hosts)
# injects it when the NVIDIA_* variables ask for the GPUs.
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/opt/huggingface \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    LD_LIBRARY_PATH=/usr/local/nvidia/lib64:/usr/local/nvidia/lib \
    PATH=/usr/local/nvidia/bin:${PATH}

# 1. CUDA PyTorch first: the largest layer, and the one that changes least often.
RUN pip install --upgrade pip \
    && pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"

# 2. The Beam SDK of the launcher and capfleet's dependencies (from pyproject.toml only, so that
#    editing capfleet's code does not re-download them). torch is named again so that nothing
#    replaces the CUDA build installed above.
COPY pyproject.toml README.md /opt/capfleet/
RUN mkdir -p /opt/capfleet/src/capfleet \
    && touch /opt/capfleet/src/capfleet/__init__.py \
    && pip install "torch==${TORCH_VERSION}" "apache-beam[gcp]==${BEAM_VERSION}" "/opt/capfleet[${CAPFLEET_EXTRAS}]" \
    && pip uninstall -y capfleet \
    && rm -rf /opt/capfleet/src

# 3. Model weights in the Hugging Face cache ($HF_HOME), so that workers need no hub access and
#    `--captioner blip --scorer clip` (or the hub ids) resolve offline. TF, Flax and ONNX files
#    are skipped, and so are *.bin weights when a repository also has safetensors; the download
#    chunk cache (xet) is dropped. The last command checks that every baked model resolves with
#    the hub switched off.
RUN if [ -n "${MODELS}" ]; then \
        python -c "import sys; from huggingface_hub import list_repo_files, snapshot_download; \
skip = ['*.h5', '*.msgpack', '*.onnx', '*.onnx_data', '*.ot', '*.tflite', 'onnx/*', 'tf_model*', 'flax_model*', 'rust_model*', 'coreml/*']; \
[print(snapshot_download(m, ignore_patterns=skip + (['*.bin', '*.pt', '*.pth'] if any(f.endswith('.safetensors') for f in list_repo_files(m)) else []))) for m in sys.argv[1:]]" ${MODELS} \
        && rm -rf "${HF_HOME}/xet" /root/.cache \
        && HF_HUB_OFFLINE=1 python -c "import sys; from transformers import AutoConfig; \
[print(m, AutoConfig.from_pretrained(m).model_type) for m in sys.argv[1:]]" ${MODELS}; \
    fi
ENV HF_HUB_OFFLINE=${HUB_OFFLINE} \
    TRANSFORMERS_OFFLINE=${HUB_OFFLINE}

# 4. capfleet itself, then a check that the image is what the launcher expects.
COPY src /opt/capfleet/src
RUN pip install --no-deps "/opt/capfleet" \
    && rm -rf /opt/capfleet \
    && pip check \
    && capfleet caption --help > /dev/null \
    && python -c "import sys, apache_beam, torch, capfleet; \
assert torch.version.cuda, 'torch is a CPU-only build: check TORCH_INDEX_URL'; \
assert apache_beam.__version__ == '${BEAM_VERSION}', apache_beam.__version__; \
print('python', sys.version.split()[0], '| apache-beam', apache_beam.__version__, '| torch', torch.__version__, 'CUDA', torch.version.cuda, '| capfleet', capfleet.__version__)"

# 5. The Beam SDK harness boot program must be the entrypoint: Dataflow, and Flink or Spark with
#    --environment_type=DOCKER, start the container with its worker arguments.
COPY --from=beam_sdk /opt/apache/beam /opt/apache/beam
ENTRYPOINT ["/opt/apache/beam/boot"]

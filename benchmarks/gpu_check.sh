#!/usr/bin/env bash
# One prepared GPU check (issue 25), sized for a lent device: under 8 minutes on a single GPU,
# using the device's own torch/transformers (nothing is installed). It builds full-size
# random-weight BLIP-base + CLIP (tests/tiny_models.py) and reports, into $OUT (or ./gpu_check_out):
#   1. benchmarks/bench_pipeline.py --device cuda: capfleet vs the batched loop and transformers.pipeline
#      (last line: `capfleet / best batched baseline = N.NNx`, goal >= 1.5x);
#   2. GPU busy % over that run, from `nvidia-smi dmon` (goal >= 80%);
#   3. `capfleet caption --batch-size auto` on 256 images: the batch size it found, and no OOM;
#   4. `capfleet bench --device cuda` on the same models.
# Dry run on a CPU (checks the script, not the GPU): DRY_RUN=1 bash benchmarks/gpu_check.sh
# With processes sharing the GPU (step 1 only): STEPS=12 MODEL_PROCESSES=3 bash benchmarks/gpu_check.sh
set -uo pipefail

cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-$PWD/gpu_check_out}
WORK=${WORK:-$(mktemp -d /tmp/capfleet-gpu-check.XXXXXX)}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1

if [[ ${DRY_RUN:-0} == 1 ]]; then
    # Tiny models and few images: it checks the script's steps, not speed (a busy CPU may need minutes).
    DEVICE=cpu SIZE=tiny IMAGES=4 AUTO_IMAGES=8 BATCHES=2 REPEATS=1 LIMIT=900 STEP_LIMIT=600
else
    DEVICE=cuda SIZE=full IMAGES=${IMAGES:-192} AUTO_IMAGES=256 BATCHES=8,32,128 REPEATS=2 LIMIT=300 STEP_LIMIT=100
fi
STEPS=${STEPS:-1234}  # e.g. STEPS=12: the benchmark and busy % only
# e.g. MODEL_PROCESSES=3: capfleet's rows run 3 processes sharing the GPU (--model-processes; unmeasured on a GPU yet)
PROCESSES=${MODEL_PROCESSES:+--model-processes $MODEL_PROCESSES}
MODEL_DIR="$WORK"  # bench_pipeline.py --keep leaves blip-$SIZE, clip-$SIZE and images/ here

section() { echo; echo "=== $* ($(date -u +%H:%M:%S), load $(cut -d' ' -f1 /proc/loadavg))"; }

section "environment"
"$PY" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__,
"cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")' \
    || { echo "torch/transformers missing: nothing to check"; exit 1; }
"$PY" -c 'import typer, tqdm, PIL, numpy, fsspec' || echo "WARNING: capfleet's CLI dependencies are missing (steps 3-4 will fail)"

section "1+2. bench_pipeline.py --device $DEVICE --size $SIZE (GPU busy % alongside)"
DMON_PID=
if [[ $DEVICE == cuda ]] && command -v nvidia-smi >/dev/null; then
    nvidia-smi dmon -s u -d 1 >"$OUT/dmon.txt" 2>&1 &
    DMON_PID=$!
fi
timeout "$LIMIT" "$PY" -W ignore benchmarks/bench_pipeline.py --device "$DEVICE" --size "$SIZE" --images "$IMAGES" \
    --decode-images "$AUTO_IMAGES" --repeats "$REPEATS" --keep "$WORK" $PROCESSES 2>&1 | grep -v "Loading weights\|Writing model" \
    | tee "$OUT/bench_pipeline.txt"
echo "bench_pipeline exit status: ${PIPESTATUS[0]}"
if [[ -n $DMON_PID ]]; then
    kill "$DMON_PID"
    # dmon columns: gpu sm mem enc dec ...; the mean of `sm` over samples with any activity.
    awk '$1 !~ /#/ && $2 ~ /^[0-9]+$/ {n++; s+=$2; if ($2 > 0) {a++; t+=$2}}
         END {if (n) printf "GPU busy (sm %%): mean %.0f%% over %d s, %.0f%% over the %d busy seconds\n", s/n, n, a ? t/a : 0, a}' \
        "$OUT/dmon.txt" | tee "$OUT/busy.txt"
fi

if [[ $STEPS == *3* ]]; then
section "3. capfleet caption --batch-size auto on $AUTO_IMAGES images"
timeout "$STEP_LIMIT" "$PY" -m capfleet.cli caption "$WORK/images" --output "$WORK/auto-out" --captioner "$MODEL_DIR/blip-$SIZE" \
    --scorer "$MODEL_DIR/clip-$SIZE" --device "$DEVICE" --batch-size auto 2>&1 | grep -iv "Loading weights" \
    | tee "$OUT/batch_auto.txt" | grep -i "batch size\|error\|out of memory\|captioned"
echo "caption exit status: ${PIPESTATUS[0]}"
fi

if [[ $STEPS == *4* ]]; then
section "4. capfleet bench --device $DEVICE"
timeout "$STEP_LIMIT" "$PY" -m capfleet.cli bench --device "$DEVICE" --captioner "$MODEL_DIR/blip-$SIZE" \
    --scorer "$MODEL_DIR/clip-$SIZE" --batch-sizes "$BATCHES" --candidates 3 --max-new-tokens 12 2>&1 \
    | grep -v "Loading weights" | tee "$OUT/capfleet_bench.txt"
echo "bench exit status: ${PIPESTATUS[0]}"
fi

section "summary"
grep "^capfleet / best batched baseline" "$OUT/bench_pipeline.txt" || echo "no bench_pipeline result"
cat "$OUT/busy.txt" 2>/dev/null || echo "no GPU busy figure (no nvidia-smi or a dry run)"
grep -i "batch size" "$OUT/batch_auto.txt" || echo "no batch size line from --batch-size auto"
[[ ${KEEP_WORK:-0} == 1 ]] || rm -rf "$WORK"

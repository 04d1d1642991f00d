#!/usr/bin/env bash
# scripts/gpu_check.sh OUTDIR: the CUDA tests and the GPU benchmarks, on one GPU, in under 8 minutes.
#
# Run from anywhere on a machine with a CUDA GPU and python3 with torch, triton, transformers,
# pytest, hypothesis, pyarrow and pyyaml (ray is not needed: no file run here imports it).
# Writes under OUTDIR:
#   env.txt                 nvidia-smi, Python and package versions, the commit
#   tests.log               pytest over the test files that hold CUDA tests (-rs: skip reasons)
#   engine.log, .json       python3 -m benchmarks.engine --device cuda --json   ($ENGINE_BENCH_ARGS appended,
#                           e.g. ENGINE_BENCH_ARGS="--decode-kernel triton")
#   learner.log, .json      python3 -m benchmarks.learner --device cuda --json $LEARNER_BENCH_ARGS (default
#                           --gradient-checkpointing: at 16 x 4,096 tokens of apr-228m the activations
#                           of all layers alone exceed the 40 GB goal)
#   decode_kernel.log, .json  python3 -m benchmarks.decode_kernel --json
# Each part has its own time limit (`timeout`); a failed or timed-out part does not stop
# the others. Prints a summary; exits 1 if any part failed. PYTHON overrides python3.
set -uo pipefail

if [ $# -ne 1 ]; then
    echo "usage: scripts/gpu_check.sh OUTDIR" >&2
    exit 2
fi
mkdir -p "$1"
OUT=$(cd "$1" && pwd)
cd "$(dirname "$0")/.."
export PYTHONPATH=. PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}

# Seconds per part (each may be overridden from the environment): 180 + 150 + 90 + 40 = 460 < 480.
TESTS_S=${TESTS_S:-180} ENGINE_S=${ENGINE_S:-150} LEARNER_S=${LEARNER_S:-90} KERNEL_S=${KERNEL_S:-40}

TEST_FILES=(
    tests/rollout/test_paged_decode_kernel.py
    tests/rollout/test_cuda_graph.py
    tests/learner/test_fused_logprob.py
    tests/learner/test_bench_logprob_speed.py
    tests/learner/test_rl_device.py
    tests/learner/test_packing.py
    tests/learner/test_packed_attention.py
)

declare -A STATUS
FAILED=0
record() {  # record NAME EXIT_CODE
    if [ "$2" -eq 0 ]; then STATUS[$1]="ok"
    elif [ "$2" -eq 124 ] || [ "$2" -eq 137 ]; then STATUS[$1]="TIMED OUT"; FAILED=1
    else STATUS[$1]="FAILED (exit $2)"; FAILED=1
    fi
}

{
    date -u
    nvidia-smi || echo "nvidia-smi: not found or failed"
    "$PY" - <<'EOF'
import importlib, platform, sys
print("python", sys.version.split()[0], platform.platform())
for name in ("torch", "triton", "transformers", "pytest", "hypothesis", "pyarrow", "yaml"):
    try:
        module = importlib.import_module(name)
        print(name, getattr(module, "__version__", "?"))
    except ImportError as e:
        print(name, "MISSING", e)
import torch
print("cuda", torch.version.cuda, "available", torch.cuda.is_available(),
      torch.cuda.get_device_name() if torch.cuda.is_available() else "")
EOF
    git rev-parse HEAD 2>/dev/null && git status --short 2>/dev/null | head -50 || echo "no git checkout"
} > "$OUT/env.txt" 2>&1
echo "== environment: $OUT/env.txt"

# Test files that exist and do not import ray themselves (the GPU machine has no ray).
: > "$OUT/tests.log"
RUN_FILES=()
for file in "${TEST_FILES[@]}"; do
    if [ ! -f "$file" ]; then
        echo "skipping $file: not in this checkout" | tee -a "$OUT/tests.log"
    elif grep -Eq '^\s*(import ray|from ray)' "$file"; then
        echo "skipping $file: imports ray" | tee -a "$OUT/tests.log"
    else
        RUN_FILES+=("$file")
    fi
done
echo "== tests (limit ${TESTS_S} s): ${RUN_FILES[*]}"
timeout -k 10 "$TESTS_S" "$PY" -m pytest -q -rs -p no:cacheprovider "${RUN_FILES[@]}" 2>&1 | tee -a "$OUT/tests.log"
record tests $?

bench() {  # bench NAME LIMIT_S ARGS...: output in NAME.log, the last JSON line in NAME.json
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit} s): $PY $*"
    timeout -k 10 "$limit" "$PY" "$@" 2>&1 | tee "$OUT/$name.log"
    local code=$?
    # The last line that parses as a JSON object; an empty file when there is none.
    "$PY" - "$OUT/$name.log" > "$OUT/$name.json" <<'EOF'
import json, sys
found = None
for line in open(sys.argv[1], errors="replace"):
    if line.startswith("{"):
        try:
            found = json.loads(line)
        except ValueError:
            pass
if found is not None:
    print(json.dumps(found))
EOF
    if [ "$code" -eq 0 ] && [ ! -s "$OUT/$name.json" ]; then
        echo "$name: exited 0 without a JSON line" >&2
        code=1
    fi
    record "$name" "$code"
}

# shellcheck disable=SC2086  # ENGINE_BENCH_ARGS is a list of words
bench engine "$ENGINE_S" -m benchmarks.engine --device cuda --json ${ENGINE_BENCH_ARGS:-}
# shellcheck disable=SC2086
bench learner "$LEARNER_S" -m benchmarks.learner --device cuda --json ${LEARNER_BENCH_ARGS---gradient-checkpointing}
bench decode_kernel "$KERNEL_S" -m benchmarks.decode_kernel --json

echo
echo "== summary ($OUT)"
TOTALS=$(grep -E '(passed|failed|error).* in [0-9.]+s' "$OUT/tests.log" | tail -n 1)
echo "tests: ${STATUS[tests]}; $TOTALS"
for name in engine learner decode_kernel; do
    echo "$name: ${STATUS[$name]}"
    "$PY" - "$OUT/$name.json" <<'EOF'
import json, sys
KEYS = (
    "paged_tokens_per_s", "paged_tokens_per_s_eager", "hf_tokens_per_s", "speedup_vs_hf", "gpu_busy_fraction",
    "gpu_busy_fraction_eager", "decode_step_ms", "decode_step_gpu_ms", "decode_graph_replay_ms",
    "decode_step_kernels", "decode_step_kernels_eager", "paged_capture_seconds",
    "packed_tokens_per_s", "causal_tokens_per_s", "packed_over_causal", "peak_gb", "logprob_ms", "naive_logprob_ms",
    "decode_kernel_tb_per_s", "torch_decode_tb_per_s",
)
text = open(sys.argv[1]).read().strip()
if text:
    figures = json.loads(text)
    for key in KEYS:
        if key in figures:
            print(f"  {key}: {figures[key]}")
EOF
done
exit "$FAILED"

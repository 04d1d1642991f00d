#!/usr/bin/env bash
# The main job on the embedded default (countdown-3, CPU, the tiny model), as far as
# treadle goes today: validate the experiment, generate its problems, evaluate the
# committed SoS+ SFT model on held-out problems, and score a file of answers.
# Later stages (RL) extend this script.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=configs/countdown-3-sft-sos.yaml
RUN=runs/main-job
NUM_EVAL=${NUM_EVAL:-200}

treadle config "$CONFIG" > /dev/null
treadle data countdown --config "$CONFIG" --out "$RUN/data"
treadle eval "$CONFIG" eval.checkpoint=checkpoints/countdown-3-sft-sos eval.num_problems="$NUM_EVAL" \
    --problems "$RUN/data/val.parquet" --mode sequential --out "$RUN/eval-sos"
treadle verify countdown --in examples/countdown-answers.jsonl --out "$RUN/verified.jsonl"
echo "main job done: problems in $RUN/data, evaluation in $RUN/eval-sos/summary.json, scores in $RUN/verified.jsonl"

#!/usr/bin/env bash
# The main job on the embedded default (countdown-3, CPU, the tiny model), as far as
# treadle goes today: validate the experiment, generate its problems, build its
# tokenizer and a fresh tiny model in Hugging Face format, and score a file of answers.
# Later stages (SFT, RL) extend this script.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=configs/countdown-3.yaml
RUN=runs/countdown-3

treadle config "$CONFIG" > /dev/null
treadle data countdown --config "$CONFIG" --out "$RUN/data"
treadle model init --config "$CONFIG" --out "$RUN/model-init"
treadle verify countdown --in examples/countdown-answers.jsonl --out "$RUN/verified.jsonl"
echo "main job done: problems in $RUN/data, model in $RUN/model-init, scores in $RUN/verified.jsonl"

#!/usr/bin/env bash
# The main job on the embedded default (countdown-3, CPU, the tiny model): validate the
# experiments, generate the problems, evaluate the two committed SFT models (SoS+
# sequential, APR spawn/join) on held-out problems with the embedded paged engine, run
# asynchronous RL of the APR model on a local Ray (150 learner steps, greedy accuracy on
# 400 held-out problems every 50 steps), and score a file of answers.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=runs/main-job
NUM_EVAL=${NUM_EVAL:-200}
RL_STEPS=${RL_STEPS:-150}

treadle config configs/countdown-3-sft-sos.yaml > /dev/null
treadle config configs/countdown-3-sft-apr.yaml > /dev/null
treadle data countdown --config configs/countdown-3.yaml --out "$RUN/data"
treadle eval configs/countdown-3-sft-sos.yaml eval.checkpoint=checkpoints/countdown-3-sft-sos \
    eval.num_problems="$NUM_EVAL" --problems "$RUN/data/val.parquet" --mode sequential --out "$RUN/eval-sos"
treadle eval configs/countdown-3-sft-apr.yaml eval.checkpoint=checkpoints/countdown-3-sft-apr \
    eval.num_problems="$NUM_EVAL" --problems "$RUN/data/val.parquet" --mode apr --out "$RUN/eval-apr"
rm -rf "$RUN/rl-apr"
treadle train configs/countdown-3-rl-apr.yaml train.steps="$RL_STEPS" run_dir="$RUN/rl-apr"
treadle verify countdown --in examples/countdown-answers.jsonl --out "$RUN/verified.jsonl"
echo
cat "$RUN/rl-apr/report.md"
echo
echo "main job done: RL report $RUN/rl-apr/report.md, metrics $RUN/rl-apr/train_metrics.jsonl,"
echo "TensorBoard $RUN/rl-apr/tensorboard, RL policy $RUN/rl-apr/final;"
echo "SFT evaluations in $RUN/eval-sos and $RUN/eval-apr (summary.json, results.jsonl, plots)"

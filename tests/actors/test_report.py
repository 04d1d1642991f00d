"""RUN/report.md with its PNG plots (actors/report.py) and `treadle report RUN_DIR`, on a
run directory built by hand: a few lines of train_metrics.jsonl and consumed.jsonl, an
eval.json and a config.yaml, as `treadle train` leaves them."""
from __future__ import annotations

import json
import re

from actors.cli import main
from actors.report import PLOTS, REPORT, write_report


def build_run(run_dir, mode="apr"):
    run_dir.mkdir()
    lines = []
    for version in (1, 2, 3):
        lines.append({
            "version": version, "reward": 0.2 * version, "accuracy": 0.25 * version, "loss": 0.01, "entropy": 0.5,
            "clip_fraction": 0.0, "mismatch_kl": 0.0, "max_token_staleness": version - 1,
            "token_staleness": {str(lag): 10 * (lag + 1) for lag in range(version)}, "learner_wait_s": 0.1,
            "learner_step_s": 1.0, "weight_sync_s": 0.02, "elapsed_s": 1.5 * version,
            "rollout_tokens_per_s": 1000.0 + version, "rollout_idle_ratio": 0.5, "learner_idle_ratio": 0.2,
            "buffer": {"admitted": 16 * version + 8, "consumed": 8 * version, "dropped": 0, "in_flight": 8,
                       "buffered": 8 * version},
            "dropped_by_reason": {}, "worker_restarts": 0, "restores": 0,
        })  # fmt: skip
    (run_dir / "train_metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    ledger = [{"version": v, "episodes": [{"episode_id": f"e{v}", "lag": v - 1}]} for v in (1, 2, 3)]
    (run_dir / "consumed.jsonl").write_text("".join(json.dumps(line) + "\n" for line in ledger))
    evaluations = [
        {"step": step, "accuracy": 0.5 + 0.1 * i, "mean_total_tokens": 200.0 - 10 * i,
         "mean_critical_path_tokens": 120.0 - 5 * i}
        for i, step in enumerate((0, 2, 3))
    ]  # fmt: skip
    (run_dir / "eval.json").write_text(json.dumps(evaluations))
    (run_dir / "config.yaml").write_text(f"name: hand\ntrain:\n  mode: {mode}\n  max_staleness: 2\n")
    return run_dir


def embedded_images(report: str) -> list[str]:
    return re.findall(r"!\[[^\]]+\]\(([^)]+)\)", report)


def test_report_command_writes_the_plots_and_embeds_each(tmp_path, capsys):
    run_dir = build_run(tmp_path / "run")
    assert main(["report", str(run_dir)]) == 0
    assert str((run_dir / REPORT).resolve()) in capsys.readouterr().out
    text = (run_dir / REPORT).read_text()
    images = embedded_images(text)
    assert images == [f"{PLOTS}/{name}.png" for name in ("reward", "tokens_per_s", "staleness", "idle", "thread_tokens")]
    for image in images:
        assert (run_dir / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "(bound 2)" in text and "| 3 | 0.700 | 180.0 |" in text


def test_sequential_runs_have_no_thread_token_plot_and_the_driver_call_matches(tmp_path):
    run_dir = build_run(tmp_path / "run", mode="sequential")
    evaluations = json.loads((run_dir / "eval.json").read_text())
    text = write_report(run_dir, evaluations, 2, "sequential").read_text()
    assert "thread_tokens.png" not in text and f"{PLOTS}/reward.png" in text


def test_report_command_refuses_a_directory_that_is_not_a_run(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "not a treadle train run directory" in capsys.readouterr().err

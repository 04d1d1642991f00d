"""`treadle verify countdown --in FILE.jsonl --out FILE.jsonl`: score model outputs.

Each input line is one JSON object {"numbers": [...], "target": T, "output": "..."}; the
same object is written out with "reward" (1.0 or 0.0) and "reason" added (and "detail",
a short explanation, with --details). Lines are streamed, so files of any length run in
bounded memory. A line that is not a JSON object is not dropped: it is written as
{"line": N, "raw": "<the line>", "reward": 0.0, "reason": "bad_record", "detail": ...}.
Blank lines are skipped. `-` reads standard input or writes standard output.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import IO, Any, Iterator


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    verify = subparsers.add_parser("verify", help="score model outputs with a task's verifier")
    tasks = verify.add_subparsers(dest="task", required=True, metavar="TASK")
    p = tasks.add_parser(
        "countdown",
        help="score Countdown answers in a JSON-lines file",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--in", dest="input", required=True, metavar="FILE", help="input JSONL ('-' for stdin)")
    p.add_argument("--out", required=True, metavar="FILE", help="output JSONL ('-' for stdout)")
    p.add_argument("--details", action="store_true", help="also add a 'detail' field to every record")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from actors.errors import UsageError

    if args.input != "-" and not Path(args.input).is_file():
        raise UsageError(f"--in {args.input}: no such file")
    start = time.perf_counter()
    counts: collections.Counter[str] = collections.Counter()
    with _open_input(args.input) as source, _atomic_output(args.out) as sink:
        for record in score_lines(source, details=args.details):
            counts[record["reason"]] += 1
            sink.write(json.dumps(record, ensure_ascii=True) + "\n")
    total = sum(counts.values())
    correct = counts.get("correct", 0)
    summary = ", ".join(f"{reason} {n}" for reason, n in counts.most_common())
    print(
        f"verified {total} records in {time.perf_counter() - start:.2f} s: "
        f"{correct}/{total} correct ({summary or 'none'})",
        file=sys.stderr,
    )
    return 0


def score_lines(lines: IO[str], details: bool = False) -> Iterator[dict[str, Any]]:
    """Yield one output record for every non-blank input line."""
    from reward.record import verify_record
    from reward.verdict import Reason

    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError) as e:  # JSONDecodeError, huge ints, deep nesting
            detail = f"line {number}: not JSON ({type(e).__name__}: {str(e)[:120]})"
            yield _bad_line(number, line, detail, Reason.BAD_RECORD)
            continue
        if not isinstance(obj, dict):
            detail = f"line {number}: expected a JSON object, got {type(obj).__name__}"
            yield _bad_line(number, line, detail, Reason.BAD_RECORD)
            continue
        verdict = verify_record(obj)
        obj["reward"] = verdict.reward
        obj["reason"] = verdict.reason.value
        if details:
            obj["detail"] = verdict.detail
        yield obj


def _bad_line(number: int, line: str, detail: str, reason: Any) -> dict[str, Any]:
    return {"line": number, "raw": line.rstrip("\n"), "reward": 0.0, "reason": reason.value, "detail": detail}


@contextlib.contextmanager
def _open_input(path: str) -> Iterator[IO[str]]:
    if path == "-":
        yield sys.stdin
        return
    # surrogateescape keeps undecodable bytes, so a bad line's "raw" loses nothing.
    with open(path, encoding="utf-8", errors="surrogateescape", newline="\n") as f:
        yield f


@contextlib.contextmanager
def _atomic_output(path: str) -> Iterator[IO[str]]:
    """Write to a temporary name and rename at the end: no half-written output file."""
    if path == "-":
        yield sys.stdout
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            yield f
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)

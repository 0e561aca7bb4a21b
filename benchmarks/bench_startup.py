"""Wall time of `ringleader --help` (and a usage error) against the interpreter's own start.

Run: .venv/bin/python benchmarks/bench_startup.py [--runs N] [--json]

Each target is a fresh process, timed from spawn to exit; the targets take turns, one run of
each per round after a warm-up round, so a busy (shared) machine slows them alike. Reported:
the median and the fastest run in ms, and the median as a ratio of the baselines measured in
the same run with the same interpreter: `python -c pass` (start-up alone) and
`python -c "import confluent_kafka"` (one client library). The target is `--help` under
300 ms. `import ringleader.worker.runtime` (what a worker process loads before it runs) is
printed to be tracked, not held to the target.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

PY = sys.executable
RINGLEADER = str(Path(PY).with_name("ringleader"))
HELP_TARGET_MS = 300.0

# (label, argv, expected exit code)
TARGETS: list[tuple[str, list[str], int]] = [
    ("python -c pass", [PY, "-c", "pass"], 0),
    ("python -c 'import confluent_kafka'", [PY, "-c", "import confluent_kafka"], 0),
    ("ringleader --help", [RINGLEADER, "--help"], 0),
    ("ringleader submit --help", [RINGLEADER, "submit", "--help"], 0),
    ("ringleader tail --max 0 (usage error)", [RINGLEADER, "tail", "--max", "0"], 2),
    ("import ringleader.worker.runtime", [PY, "-c", "import ringleader.worker.runtime"], 0),
]
BASE, KAFKA, HELP = TARGETS[0][0], TARGETS[1][0], TARGETS[2][0]


def once(argv: list[str], expected: int) -> float:
    t0 = time.perf_counter()
    cp = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    ms = (time.perf_counter() - t0) * 1000
    if cp.returncode != expected:
        sys.exit(f"{' '.join(argv)}: exit {cp.returncode}, expected {expected}\n"
                 f"{cp.stderr.decode(errors='replace')}")  # fmt: skip
    return ms


def measure(runs: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {label: [] for label, _, _ in TARGETS}
    for _, argv, rc in TARGETS:  # warm-up: bytecode caches, the page cache
        once(argv, rc)
    for _ in range(runs):
        for label, argv, rc in TARGETS:
            samples[label].append(once(argv, rc))
    return samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=10, help="runs of each target (default 10)")
    ap.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    opts = ap.parse_args()
    if opts.runs < 1:
        ap.error("--runs must be at least 1")

    samples = measure(opts.runs)
    median = {label: statistics.median(s) for label, s in samples.items()}
    rows = [
        {
            "target": label,
            "median_ms": round(median[label], 1),
            "min_ms": round(min(samples[label]), 1),
            "x_python": round(median[label] / median[BASE], 2),
            "x_confluent_kafka": round(median[label] / median[KAFKA], 2),
        }
        for label, _, _ in TARGETS
    ]
    help_ms = median[HELP]
    summary = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "python": platform.python_version(),
        "host": f"{platform.system()} {platform.node()} ({os.cpu_count()} cpus)",
        "runs": opts.runs,
        "help_ms": round(help_ms, 1),
        "help_over_python_ms": round(help_ms - median[BASE], 1),
        "help_target_ms": HELP_TARGET_MS,
        "help_ok": help_ms < HELP_TARGET_MS,
        "targets": rows,
    }
    if opts.json:
        print(json.dumps(summary))
        return
    print(f"bench_startup {summary['when']}; Python {summary['python']}; {summary['host']}; "
          f"median of {opts.runs} runs each, interleaved")  # fmt: skip
    print(f"{'target':<40} {'median ms':>10} {'min ms':>8} {'x python':>9} {'x ckafka':>9}")
    for r in rows:
        print(f"{r['target']:<40} {r['median_ms']:>10.1f} {r['min_ms']:>8.1f} "
              f"{r['x_python']:>9.2f} {r['x_confluent_kafka']:>9.2f}")  # fmt: skip
    verdict = "ok" if summary["help_ok"] else "OVER"
    print(f"\nringleader --help: {help_ms:.0f} ms median, {summary['help_over_python_ms']:.0f} ms "
          f"over the interpreter's start; target < {HELP_TARGET_MS:.0f} ms: {verdict}")  # fmt: skip
    print("(import ringleader.worker.runtime is tracked, not held to a target)")


if __name__ == "__main__":
    main()

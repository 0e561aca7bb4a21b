"""Wall time of `ringleader --help` (and a usage error) against the interpreter's own start.

Run: .venv/bin/python benchmarks/bench_startup.py [--runs N] [--json]

Each target is a fresh process, timed from spawn to exit; the targets take turns, one run of
each per round after a warm-up round, so a busy (shared) machine slows them alike. Reported:
the median and the fastest run in ms, and the median as a ratio of the baselines measured in
the same run with the same interpreter: `python -c pass` (start-up alone) and
`python -c "import confluent_kafka"` (one client library). The target is `--help` under
300 ms. The imports of a worker process are printed to be tracked, not held to the target:
`import ringleader.worker.run` (the entry module), the test app `tests.worker.apps.counting`
(`from ringleader.worker.app import App` and redis), `import ringleader.worker.runtime` (what
the entry loads before it runs) and all three together, what `python -m ringleader.worker.run
tests.worker.apps.counting:app` imports before it connects; against `python -c "import
confluent_kafka, redis"`, the client libraries any worker on them loads.
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
ROOT = Path(__file__).resolve().parents[1]  # the cwd of every target: `tests` imports from it
HELP_TARGET_MS = 300.0
# What the counting app reads at import (App() checks them); nothing listens there.
APP_ENV = {
    "RINGLEADER_NAMESPACE": "bench-startup",
    "RINGLEADER_BOOTSTRAP": "127.0.0.1:1",
    "RINGLEADER_REDIS": "redis://127.0.0.1:1/0",
}
ENV = {**os.environ, **APP_ENV}
WORKER_IMPORTS = (
    "import ringleader.worker.run, ringleader.worker.runtime, tests.worker.apps.counting"
)

# (label, argv, expected exit code)
TARGETS: list[tuple[str, list[str], int]] = [
    ("python -c pass", [PY, "-c", "pass"], 0),
    ("python -c 'import confluent_kafka'", [PY, "-c", "import confluent_kafka"], 0),
    ("ringleader --help", [RINGLEADER, "--help"], 0),
    ("ringleader submit --help", [RINGLEADER, "submit", "--help"], 0),
    ("ringleader tail --max 0 (usage error)", [RINGLEADER, "tail", "--max", "0"], 2),
    ("python -c 'import confluent_kafka, redis'", [PY, "-c", "import confluent_kafka, redis"], 0),
    ("import ringleader.worker.run", [PY, "-c", "import ringleader.worker.run"], 0),
    ("import tests.worker.apps.counting", [PY, "-c", "import tests.worker.apps.counting"], 0),
    ("import ringleader.worker.runtime", [PY, "-c", "import ringleader.worker.runtime"], 0),
    ("worker run + runtime + counting app", [PY, "-c", WORKER_IMPORTS], 0),
]
BASE, KAFKA, HELP, CLIENTS = TARGETS[0][0], TARGETS[1][0], TARGETS[2][0], TARGETS[5][0]


def once(argv: list[str], expected: int) -> float:
    t0 = time.perf_counter()
    cp = subprocess.run(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT, env=ENV, check=False
    )
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
            "over_clients_ms": round(median[label] - median[CLIENTS], 1),
        }
        for label, _, _ in TARGETS
    ]
    help_ms = median[HELP]
    summary = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "python": platform.python_version(),
        "host": f"{platform.system()} {platform.node()} ({os.cpu_count()} cpus)",
        "runs": opts.runs,
        # Set (as on the CI VM) and no bytecode written by scripts/setup.sh: every target
        # compiles the ringleader modules it imports, each run.
        "dont_write_bytecode": bool(os.environ.get("PYTHONDONTWRITEBYTECODE"))
        and not (ROOT / "ringleader" / "__pycache__").is_dir(),
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
    if summary["dont_write_bytecode"]:
        print("PYTHONDONTWRITEBYTECODE is set and there is no bytecode (scripts/setup.sh "
              "writes it): ringleader's modules are compiled on every import")  # fmt: skip
    print(f"{'target':<44} {'median ms':>10} {'min ms':>8} {'x python':>9} {'x ckafka':>9} "
          f"{'- clients':>10}")  # fmt: skip
    for r in rows:
        print(f"{r['target']:<44} {r['median_ms']:>10.1f} {r['min_ms']:>8.1f} "
              f"{r['x_python']:>9.2f} {r['x_confluent_kafka']:>9.2f} "
              f"{r['over_clients_ms']:>+10.1f}")  # fmt: skip
    verdict = "ok" if summary["help_ok"] else "OVER"
    print(f"\nringleader --help: {help_ms:.0f} ms median, {summary['help_over_python_ms']:.0f} ms "
          f"over the interpreter's start; target < {HELP_TARGET_MS:.0f} ms: {verdict}")  # fmt: skip
    print("(the worker imports are tracked, not held to a target; '- clients' is the median over "
          f"{CLIENTS})")  # fmt: skip


if __name__ == "__main__":
    main()

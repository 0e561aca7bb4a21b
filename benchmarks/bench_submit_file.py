"""Submit rate of `submit --from-file` against `Client.submit_many`, measured in the same run.

    python benchmarks/bench_submit_file.py --bootstrap 127.0.0.1:19092 [--lines 100000]

One JSON-lines file of `--lines` tasks (`{"name": "bench.noop", "args": [i, "two", 3.0],
"kwargs": {"k": "v"}}`, the task of benchmarks/bench_submit.py) is written to a temp dir,
then `--trials` alternating trials (which goes first alternates too) time, on one warm
Client, against a fresh namespace of 12 partitions:
* from-file: `submit_file.submit_path`, what the CLI's `submit --from-file FILE` runs: the
  file read line by line, each line parsed and checked, `submit_many` per chunk of
  `submit_file.CHUNK` (each acknowledged);
* submit_many, 1 call: the same TaskSpecs already in memory, one `submit_many` of all;
* submit_many, chunks: the same in calls of CHUNK, to tell the flush per chunk from the
  parsing.
Prints each trial, the best rates and the ratio from-file / submit_many (1 call) of the best
rates and of each trial. Target: from-file at least 0.8 x submit_many.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from ringleader.client import Client, TaskSpec
from ringleader.submit_file import CHUNK, submit_path
from ringleader.worker.namespace import ensure_topics
from ringleader.worker.settings import AppSettings

TARGET = 0.8


def write_file(path: Path, n: int) -> None:
    with path.open("w") as f:
        for i in range(n):
            f.write(
                f'{{"name": "bench.noop", "args": [{i}, "two", 3.0], "kwargs": {{"k": "v"}}}}\n'
            )


def specs_of(n: int) -> list[TaskSpec]:
    """The TaskSpecs the file's lines parse to."""
    return [TaskSpec("bench.noop", [i, "two", 3.0], {"k": "v"}) for i in range(n)]


def timed(fn: Callable[[], int], n: int) -> float:
    """Tasks per second of `fn`, which returns how many it had acknowledged."""
    t0 = time.perf_counter()
    done = fn()
    elapsed = time.perf_counter() - t0
    assert done == n, f"{done} of {n} acknowledged"
    return n / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--bootstrap", required=True, help="Kafka host:port")
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--trials", type=int, default=3)
    args = ap.parse_args()
    n = args.lines
    ns = f"bench-file-{uuid.uuid4().hex[:8]}"
    settings = AppSettings(namespace=ns, bootstrap=args.bootstrap, partitions=12)
    ensure_topics(settings)
    with tempfile.TemporaryDirectory() as d, Client(settings=settings) as client:
        path = Path(d) / "tasks.jsonl"
        write_file(path, n)
        specs = specs_of(n)
        client.submit("bench.noop")  # warm-up: topic metadata, connections

        def many() -> int:
            return len(client.submit_many(specs))

        def chunks() -> int:
            return sum(len(client.submit_many(specs[i : i + CHUNK])) for i in range(0, n, CHUNK))

        def from_file() -> int:
            return submit_path(client, str(path)).accepted

        runs: dict[str, Callable[[], int]] = {
            "from-file": from_file,
            "submit_many, 1 call": many,
            f"submit_many, chunks of {CHUNK}": chunks,
        }
        got: dict[str, list[float]] = {k: [] for k in runs}
        size = path.stat().st_size
        print(f"{n} lines ({size / 1e6:.1f} MB), {args.trials} alternating trials, {ns}")
        for t in range(args.trials):
            order = list(runs) if t % 2 == 0 else list(reversed(runs))
            for label in order:
                got[label].append(timed(runs[label], n))
            row = "  ".join(f"{k} {got[k][-1]:,.0f}/s" for k in runs)
            print(f"  trial {t + 1}: {row}")
    best = {k: max(v) for k, v in got.items()}
    print(f"\n{args.bootstrap} (best of {args.trials})")
    for label in runs:
        print(f"  {label:<28} {best[label]:>10,.0f}/s  {_all(got[label])}")
    base = "submit_many, 1 call"
    ratio = best["from-file"] / best[base]
    per_trial = [a / b for a, b in zip(got["from-file"], got[base], strict=True)]
    print(
        f"  from-file / submit_many: {ratio:.2f} x (best rates); per trial "
        f"{' '.join(f'{r:.2f}' for r in per_trial)}, median {statistics.median(per_trial):.2f}"
    )
    print(
        f"  target from-file >= {TARGET} x submit_many: {'met' if ratio >= TARGET else 'NOT met'}"
    )


def _all(xs: list[float]) -> str:
    return "[" + " ".join(f"{x / 1000:.1f}k" for x in xs) + "]"


if __name__ == "__main__":
    main()

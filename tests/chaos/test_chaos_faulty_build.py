"""The suite must catch a broken build: workers that tell themselves a completion was
recorded while nothing was written. `ringleader chaos run` against real Apache Kafka and
Redis (its local backend starts them) must exit non-zero and name the lost tasks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.redis]

RINGLEADER = str(Path(sys.executable).with_name("ringleader"))


def test_a_build_that_drops_completions_fails_the_run_naming_lost_tasks(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RINGLEADER_")}
    cp = subprocess.run(
        [RINGLEADER, "chaos", "run", "worker-kill", "--fault", "drop-completions", "--json",
         "--drain-timeout", "15", "--dir", str(tmp_path)],
        check=False, capture_output=True, text=True, timeout=400, env=env,
    )  # fmt: skip
    assert cp.returncode == 1, f"{cp.stdout}\n{cp.stderr[-3000:]}"
    row = json.loads(cp.stdout.strip().splitlines()[-1])
    assert row["scenario"] == "worker-kill" and row["ok"] is False
    assert row["tasks"] > 0 and row["lost"] == row["tasks"], row
    assert any(b.startswith("lost:") and "invariant 3" in b for b in row["broken"]), row
    # The workers did run the tasks: only the records were missing (with none, the killed
    # worker's tasks also complete twice over, which the row may name as well).
    assert row["overlaps"] == 0
    # Everything the run started is gone again.
    assert not (tmp_path / "kafka-1" / "stack.json").exists()

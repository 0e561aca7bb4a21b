"""ringleader, the no-op task `noop` with the same completion record as the peers' (marks).

Worker: `python -m ringleader.worker.run peers.ringleader_app:app --concurrency 8` with
RINGLEADER_* and BENCH_PEERS_* set (see peers/__init__.py).
"""

from __future__ import annotations

from peers import marks
from ringleader.worker.app import App

app = App()


@app.task(name="noop")
def noop() -> None:
    marks.noop_body()

"""The chaos ledger's lines back into runs (pure)."""

from __future__ import annotations

import pytest

from ringleader.chaos.ledger import parse_runs
from ringleader.chaos.report import Run


def test_steps_of_one_run_make_one_run_with_its_first_and_last_time() -> None:
    runs = parse_runs([b"t1 9:0:aa 0 10.0", b"t1 9:0:aa 1 10.5", b"t1 9:0:aa done 10.7"])
    assert len(runs) == 1
    assert runs[0].run == Run("t1", "9:0:aa", 10.0, 10.7)
    assert runs[0].done_at == 10.7


def test_a_run_stopped_by_a_fault_has_no_end_and_a_repeat_is_its_own_run() -> None:
    runs = parse_runs(["t1 9:0:aa 0 10.0", "t1 9:0:aa 1 10.5", "t1 8:0:bb 0 17.0",
                       "t1 8:0:bb done 17.2"])  # fmt: skip
    assert [(r.run.run_id, r.run.last_active, r.done_at) for r in runs] == [
        ("9:0:aa", 10.5, None),
        ("8:0:bb", 17.2, 17.2),
    ]


def test_a_malformed_line_is_an_error_not_a_skipped_run() -> None:
    with pytest.raises(ValueError, match="malformed chaos ledger line"):
        parse_runs([b"t1 9:0:aa 10.0"])

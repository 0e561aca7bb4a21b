"""`ringleader chaos list` and the run command's refusals (no services needed)."""

from __future__ import annotations

import pytest

from ringleader.chaos.scenarios import SCENARIOS, by_name
from ringleader.cli import main

ISSUE_MATRIX = {
    "worker-kill", "worker-term", "worker-pause", "leader-kill", "leader-torn-commit",
    "coordinator-kill", "broker-restart", "redis-restart", "partition", "downstream-outage",
}  # fmt: skip


def test_list_names_every_scenario_of_the_matrix(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chaos", "list"]) == 0
    listed = {line.split()[0] for line in capsys.readouterr().out.splitlines()}
    assert listed == ISSUE_MATRIX == {s.name for s in SCENARIOS}


def test_an_unknown_scenario_is_refused_with_the_known_ones_named(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["chaos", "run", "worker-kil"]) == 2
    err = capsys.readouterr().err
    assert "unknown scenario worker-kil" in err and "worker-kill" in err


def test_no_names_means_the_whole_matrix_in_its_order() -> None:
    assert [s.name for s in by_name([])] == [s.name for s in SCENARIOS]
    assert [s.name for s in by_name(["partition", "worker-kill"])] == ["partition", "worker-kill"]

"""The Redis health monitor (pure, time passed in) and its probe against a real Redis through a
proxy the test cuts."""

from __future__ import annotations

import pytest

from ringleader.chaos.proxy import TcpProxy
from ringleader.worker.health import Decision, RedisHealth, RedisProbe


def test_leaves_only_after_the_grace_and_once() -> None:
    h = RedisHealth(grace=5.0)
    assert h.ok(0.0) is None
    assert h.failed(1.0, "refused") is None
    assert h.failed(5.9, "refused") is None  # 4.9 s into the outage
    assert h.outage(5.9) == pytest.approx(4.9)
    assert h.failed(6.0, "refused") is Decision.LEAVE
    assert h.out
    assert h.failed(60.0, "refused") is None  # already out: no second LEAVE
    assert h.ok(61.0) is Decision.REJOIN
    assert not h.out and h.outage(61.0) == 0.0
    assert h.ok(62.0) is None


def test_an_answer_within_the_grace_restarts_the_count() -> None:
    h = RedisHealth(grace=2.0)
    assert h.failed(0.0) is None
    assert h.ok(1.5) is None  # a blip: never left, nothing to rejoin
    assert h.failed(3.0) is None
    assert h.failed(4.9) is None
    assert h.failed(5.0) is Decision.LEAVE


def test_grace_must_be_positive() -> None:
    with pytest.raises(ValueError, match="grace"):
        RedisHealth(0.0)


class FakeMember:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def pause(self, reason: str) -> None:
        self.calls.append(f"pause: {reason}")

    def resume(self) -> None:
        self.calls.append("resume")


@pytest.mark.redis
def test_probe_pauses_and_resumes_the_member(redis_url: str) -> None:
    t = [0.0]
    member = FakeMember()
    with TcpProxy.to_url(redis_url)[0] as proxy:
        url = f"redis://127.0.0.1:{proxy.port}/0"
        probe = RedisProbe(url, member, grace=1.0, clock=lambda: t[0])
        try:
            assert probe.check() is None
            proxy.cut()
            assert probe.check() is None  # the outage begins
            t[0] = 1.0
            assert probe.check() is Decision.LEAVE
            assert len(member.calls) == 1 and member.calls[0].startswith("pause: Redis at ")
            assert "unreachable for 1.0s" in member.calls[0]
            proxy.restore()
            t[0] = 2.0
            assert probe.check() is Decision.REJOIN
            assert member.calls[1:] == ["resume"]
        finally:
            probe.stop()

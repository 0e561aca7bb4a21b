"""What happened to tasks, counted by task name, for a worker's `/metrics`.

Counting runs on the hot path (several times per task, on the fetcher, handler and flusher
threads), so it does not go through prometheus_client's metric objects, which take a lock on
every increment: each thread adds to a tally of its own (plain dicts only that thread
writes), and the collector sums the tallies when Prometheus scrapes. A tally is copied in
one C call under the GIL, so a scrape never sees a half-made update, and no increment is
lost. The families exposed are the same as with Counter and Histogram objects: counters
with a `task` label (and `reason` for skips), histograms with their buckets, count and sum.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from ringleader.worker.envelope import Envelope, EventKind

__all__ = ["RUN_BUCKETS", "WAIT_BUCKETS", "TaskMetrics"]

UNKNOWN = "unknown"
UNDECODABLE = "undecodable"
# Seconds; tasks here run from milliseconds (no-ops) to hours (deployments, builds).
RUN_BUCKETS = (0.005, 0.025, 0.1, 0.5, 1, 5, 30, 120, 600, 1800, 3600, 4 * 3600)
WAIT_BUCKETS = (0.005, 0.025, 0.1, 0.5, 1, 5, 30, 120, 600, 3600)
_MAX_STARTS = 100_000  # runs remembered for their run time; a run that never ends is dropped

# Counter name -> help; the kinds of event each one counts.
_COUNTERS = {
    "ringleader_tasks_received": "Tasks fetched from the task topics",
    "ringleader_tasks_started": "Task runs started",
    "ringleader_tasks_succeeded": "Task runs that succeeded",
    "ringleader_tasks_failed": "Task runs that raised",
    "ringleader_tasks_retried": "Failed runs parked for a retry",
    "ringleader_tasks_dead_lettered": "Tasks dead-lettered",
    "ringleader_tasks_cancelled": "Tasks ended as cancelled",
}
_SKIPPED = "ringleader_tasks_skipped"
_SKIPPED_HELP = (
    "Copies not run: already completed (completed, done) or an attempt already run (stale)"
)
# By the event kind's name: an Enum member hashes in Python, its name in C.
_BY_KIND = {
    EventKind.STARTED.name: "ringleader_tasks_started",
    EventKind.SUCCEEDED.name: "ringleader_tasks_succeeded",
    EventKind.FAILED.name: "ringleader_tasks_failed",
    EventKind.RETRYING.name: "ringleader_tasks_retried",
    EventKind.DEAD_LETTERED.name: "ringleader_tasks_dead_lettered",
    EventKind.CANCELLED.name: "ringleader_tasks_cancelled",
}
_ENDS = (EventKind.SUCCEEDED, EventKind.FAILED, EventKind.CANCELLED)
_RUN = (
    "ringleader_task_run_seconds",
    "Run time of one attempt, start to end",
    tuple(map(float, RUN_BUCKETS)),  # floats: bisect compares them without conversions
)
_WAIT = (
    "ringleader_task_queue_wait_seconds",
    "From submission (or the time it was due) to the start of the run",
    tuple(map(float, WAIT_BUCKETS)),
)

Key = tuple[str, str, str]  # (counter, task, reason or "")


class _Tally:
    """One thread's counts: only that thread writes them."""

    __slots__ = ("counts", "histograms")

    def __init__(self) -> None:
        self.counts: dict[Key, int] = {}
        # (histogram, task) -> per-bucket counts (the last one: +Inf), then the sum
        self.histograms: dict[tuple[str, str], list[float]] = {}


class TaskMetrics(Collector):
    """Counts of what happened to tasks, by task name; registered on `registry`."""

    def __init__(self, registry: CollectorRegistry, known: Callable[[str], bool]) -> None:
        self._known = known
        self._local = threading.local()
        self._tallies: list[_Tally] = []
        self._tallies_lock = threading.Lock()  # taken once per thread, and at scrape
        # Task id -> wall-clock start, for the run time. OrderedDict's methods are single
        # C calls, atomic under the GIL, so the threads share it without a lock.
        self._starts: OrderedDict[str, float] = OrderedDict()
        registry.register(self)

    def _tally(self) -> _Tally:
        try:
            tally: _Tally = self._local.tally
        except AttributeError:
            tally = self._local.tally = _Tally()
            with self._tallies_lock:
                self._tallies.append(tally)
        return tally

    def label(self, name: str | None) -> str:
        if name is None:
            return UNDECODABLE
        return name if self._known(name) else UNKNOWN

    def _add(self, key: Key, n: int = 1) -> None:
        counts = self._tally().counts
        counts[key] = counts.get(key, 0) + n

    def _observe(self, spec: tuple[str, str, tuple[float, ...]], task: str, value: float) -> None:
        name, _, bounds = spec
        hist = self._tally().histograms
        cells = hist.get((name, task))
        if cells is None:
            cells = hist[(name, task)] = [0.0] * (len(bounds) + 2)
        cells[bisect.bisect_left(bounds, value)] += 1  # the first bucket with le >= value
        cells[-1] += value

    def fetched(self, names: Iterable[str | None], completed: Iterable[str]) -> None:
        """Records fetched (their task names; None: undecodable), and the names of those
        skipped at once because their task had completed."""
        # A fetch is a batch of mostly one or a few names: count them, then add once each.
        for name, n in Counter(names).items():
            self._add(("ringleader_tasks_received", self.label(name), ""), n)
        for name in completed:
            self._add((_SKIPPED, self.label(name), "completed"))

    def skip(self, name: str, reason: str) -> None:
        self._add((_SKIPPED, self.label(name), reason))

    def event(self, env: Envelope, kind: EventKind, at: float) -> None:
        """A task event, as the worker writes it to `<ns>.events` (`at`: wall clock)."""
        task = self.label(env.name)
        self._add((_BY_KIND[kind.name], task, ""))
        if kind is EventKind.STARTED:
            due = max(env.submitted_at, env.not_before or 0.0)
            if due > 0:
                self._observe(_WAIT, task, max(0.0, at - due))
            starts = self._starts
            starts[env.id] = at
            if len(starts) > _MAX_STARTS:
                starts.popitem(last=False)
        elif kind in _ENDS:
            began = self._starts.pop(env.id, None)
            if began is not None:
                self._observe(_RUN, task, max(0.0, at - began))

    # ---- the scrape ----------------------------------------------------------------------

    def _summed(self) -> tuple[dict[Key, int], dict[tuple[str, str], list[float]]]:
        counts: dict[Key, int] = {}
        hists: dict[tuple[str, str], list[float]] = {}
        with self._tallies_lock:
            tallies = list(self._tallies)
        for t in tallies:
            for key, n in t.counts.copy().items():  # copy(): one C call, atomic
                counts[key] = counts.get(key, 0) + n
            for hkey, cells in t.histograms.copy().items():
                got = hists.setdefault(hkey, [0.0] * len(cells))
                for i, c in enumerate(list(cells)):
                    got[i] += c
        return counts, hists

    def collect(self) -> Iterator[Metric]:
        counts, hists = self._summed()
        families = {
            name: CounterMetricFamily(name, doc, labels=["task"]) for name, doc in _COUNTERS.items()
        }
        skipped = CounterMetricFamily(_SKIPPED, _SKIPPED_HELP, labels=["task", "reason"])
        for (name, task, reason), n in sorted(counts.items()):
            if name == _SKIPPED:
                skipped.add_metric([task, reason], n)
            else:
                families[name].add_metric([task], n)
        yield from families.values()
        yield skipped
        for name, doc, bounds in (_RUN, _WAIT):
            fam = HistogramMetricFamily(name, doc, labels=["task"])
            for (hname, task), cells in sorted(hists.items()):
                if hname != name:
                    continue
                cumulative, buckets = 0.0, []
                for le, c in zip([*map(_le, bounds), "+Inf"], cells[:-1], strict=True):
                    cumulative += c
                    buckets.append((le, cumulative))
                fam.add_metric([task], buckets, sum_value=cells[-1])
            yield fam


def _le(bound: float) -> str:
    return repr(float(bound))

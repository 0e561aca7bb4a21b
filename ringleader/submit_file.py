"""`ringleader submit --from-file FILE`: one task per line of a JSON-lines file (`-`: stdin),
submitted through `Client.submit_many` in chunks.

Each non-blank line is a JSON object (`ringleader.task_lines` says which fields and parses
it). A line that cannot be a task (not JSON, an unknown field, a wrong type, a payload over
the limit, ...) is refused with its line number and why; the other lines are submitted all
the same.

Lines go to the broker CHUNK at a time (one `submit_many`, one flush, each), or sooner when a
line comes more than MAX_WAIT seconds after its chunk's first (a slow stdin), so memory stays
flat whatever the file's size: only the first MAX_REASONS refusals are kept. A chunk counts
as accepted once the broker acknowledged it; a broker that refuses or cannot be reached stops
the run with the summary so far (the lines from `stopped_at_line` on are not confirmed).
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO

from ringleader.errors import RingleaderError
from ringleader.gcpause import paused_gc
from ringleader.handles import SubmitError
from ringleader.packing import TaskSpec, pack
from ringleader.task_lines import LineRefused, parse_line
from ringleader.worker.errors import EnvelopeError
from ringleader.worker.settings import AppSettings

if TYPE_CHECKING:
    from ringleader.client import Client

__all__ = [
    "CHUNK",
    "MAX_REASONS",
    "FileSubmission",
    "ProgressView",
    "Summary",
    "submit_file_cmd",
    "submit_path",
    "usage_problem",
]

CHUNK = 10_000  # lines per submit_many: large enough that the flush per chunk costs little
MAX_WAIT = 1.0  # seconds a read line may wait for its chunk to fill
MAX_REASONS = 20  # refusals listed in the summary; the rest are counted
# A line may be longer than its payload (JSON escapes, spaces), but not without bound: one
# longer than this many times the payload limit is refused unread, so memory stays bounded.
LINE_LIMIT_FACTOR = 16
_PROGRESS_EVERY = 4096  # lines between progress updates besides one per chunk

# The CLI's codes (ringleader.commands): 2 as for any task that cannot be sent.
EXIT_OK = 0
EXIT_REFUSED = 2

# --- the summary ----------------------------------------------------------------------------


@dataclass
class Summary:
    """What a run did: accepted (acknowledged by the broker), refused (with the first
    MAX_REASONS reasons), and where it stopped if the broker failed it."""

    accepted: int = 0
    refused: int = 0
    lines: int = 0  # lines read, blank ones included
    reasons: list[tuple[int, str]] = field(default_factory=list)
    stopped_at_line: int | None = None
    error: str | None = None

    def refuse(self, line: int, reason: str) -> None:
        self.refused += 1
        if len(self.reasons) < MAX_REASONS:
            self.reasons.append((line, reason))

    @property
    def exit_code(self) -> int:
        return EXIT_REFUSED if self.refused else EXIT_OK

    def to_json(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "refused": self.refused,
            "lines": self.lines,
            "refusals": [{"line": n, "reason": r} for n, r in sorted(self.reasons)],
            "refusals_not_listed": self.refused - len(self.reasons),
            "stopped_at_line": self.stopped_at_line,
            "error": self.error,
        }

    def format_text(self) -> str:
        out = [f"accepted {self.accepted}, refused {self.refused}"]
        # Sorted: a packer's refusal is found when its chunk is sent, after the chunk is read.
        out += [f"line {n}: {r}" for n, r in sorted(self.reasons)]
        if self.refused > len(self.reasons):
            out.append(f"... and {self.refused - len(self.reasons)} more")
        if self.stopped_at_line is not None:
            out.append(
                f"stopped at line {self.stopped_at_line} ({self.error}): the lines from there "
                "on are not confirmed (some may have been submitted)"
            )
        return "\n".join(out)


# --- progress -------------------------------------------------------------------------------


class ProgressView:
    """A rich progress bar on stderr: lines read, submitted and refused, and bytes against
    the file's size when it is known."""

    def __init__(self, total_bytes: int | None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            console=Console(file=sys.stderr),
            redirect_stdout=False,  # the summary goes to stdout after the bar is done
            redirect_stderr=False,
        )
        self._task = self._progress.add_task(self._describe(0, 0, 0), total=total_bytes)

    @staticmethod
    def _describe(lines: int, submitted: int, refused: int) -> str:
        return f"{lines:,} lines read, {submitted:,} submitted, {refused:,} refused"

    def update(self, summary: Summary, lines: int, nbytes: int) -> None:
        text = self._describe(lines, summary.accepted, summary.refused)
        self._progress.update(self._task, completed=nbytes, description=text)

    def __enter__(self) -> ProgressView:
        self._progress.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()


# --- a run ----------------------------------------------------------------------------------


class FileSubmission:
    """Reads lines from a binary stream and submits them through `client`; `summary` says
    what happened, also when a run raised (a broker error, Ctrl-C). `progress`: show a
    progress bar on stderr."""

    def __init__(self, client: Client, *, progress: bool = False, chunk: int = CHUNK) -> None:
        self.client = client
        self.summary = Summary()
        self._show_progress = progress
        self._view: ProgressView | None = None
        self._chunk = chunk
        self._specs: list[TaskSpec] = []
        self._lines: list[int] = []  # the line number of each pending spec
        self._max_line = LINE_LIMIT_FACTOR * client.settings.max_payload_bytes
        self._nbytes = 0

    def run_path(self, path: str) -> Summary:
        """Submit the lines of `path` (`-`: stdin)."""
        with _opened(path) as (stream, size):
            return self.run(stream, size)

    def run(self, stream: BinaryIO, size: int | None = None) -> Summary:
        """Submit the lines of `stream`; `size` (bytes) is the progress bar's total. The
        cyclic garbage collector is off meanwhile (see `ringleader.gcpause`)."""
        with paused_gc():
            if not self._show_progress:
                self._read(stream)
                return self.summary
            with ProgressView(size) as self._view:
                self._read(stream)
        return self.summary

    def _read(self, stream: BinaryIO) -> None:
        summary, specs, lines = self.summary, self._specs, self._lines
        readline, limit, chunk = stream.readline, self._max_line, self._chunk
        parse, refuse, clock = parse_line, summary.refuse, time.monotonic
        n = 0
        first_at = 0.0  # when the pending chunk's first line was read
        try:
            while raw := readline(limit + 1):
                n += 1
                self._nbytes += len(raw)
                if len(raw) > limit and raw[-1] != 10:  # no newline within the limit
                    self._nbytes += _skip_line(stream)
                    refuse(n, f"line longer than {limit} bytes")
                elif not raw.isspace():
                    try:
                        specs.append(parse(raw))
                    except LineRefused as e:
                        refuse(n, str(e))
                    else:
                        lines.append(n)
                        if len(specs) == 1:
                            first_at = clock()
                        if len(specs) >= chunk or clock() - first_at > MAX_WAIT:
                            self._submit_pending(n)
                if not n % _PROGRESS_EVERY:
                    self._show(n)
            self._submit_pending(n)
        except (RingleaderError, KeyboardInterrupt) as e:
            summary.stopped_at_line = lines[0] if lines else n + 1
            summary.error = "interrupted" if isinstance(e, KeyboardInterrupt) else str(e)
            raise
        finally:
            summary.lines = n

    def _submit_pending(self, n: int) -> None:
        specs, lines = self._specs, self._lines
        if specs:
            self.summary.accepted += _submit_chunk(self.client, specs, lines, self.summary)
            specs.clear()
            lines.clear()
        self._show(n)

    def _show(self, n: int) -> None:
        if self._view is not None:
            self._view.update(self.summary, n, self._nbytes)


def _skip_line(stream: BinaryIO, block: int = 1 << 20) -> int:
    """Read past the rest of an over-long line; the bytes skipped."""
    skipped = 0
    while piece := stream.readline(block):
        skipped += len(piece)
        if piece.endswith(b"\n"):
            break
    return skipped


def _submit_chunk(client: Client, specs: list[TaskSpec], lines: list[int], summary: Summary) -> int:
    """Submit the specs; how many the broker acknowledged. On a SubmitError the ones it did
    acknowledge are counted before it propagates."""
    try:
        try:
            return len(client.submit_many(specs))
        except EnvelopeError:
            # The packer refused a spec (too large, not msgpack-serialisable) before anything
            # of the chunk was produced: refuse those lines, submit the rest.
            kept = _packable(client, specs, lines, summary)
            return len(client.submit_many(kept)) if kept else 0
    except SubmitError as e:
        summary.accepted += len(e.acknowledged)
        raise


def _packable(
    client: Client, specs: list[TaskSpec], lines: list[int], summary: Summary
) -> list[TaskSpec]:
    """The specs that pack on their own; the others' lines refused with the packer's reason."""
    s = client.settings
    kept: list[TaskSpec] = []
    kept_lines: list[int] = []
    for spec, line in zip(specs, lines, strict=True):
        try:
            pack(
                [spec],
                namespace=s.namespace,
                max_payload_bytes=s.max_payload_bytes,
                batch=None,
                partitions=client.partition_count,
            )
        except EnvelopeError as e:
            summary.refuse(line, str(e))
        else:
            kept.append(spec)
            kept_lines.append(line)
    lines[:] = kept_lines  # where a broker failure would stop
    return kept


# --- files and the command ------------------------------------------------------------------


@contextmanager
def _opened(path: str) -> Iterator[tuple[BinaryIO, int | None]]:
    """The stream to read (stdin for `-`, left open) and its size in bytes when known."""
    if path == "-":
        stream = sys.stdin.buffer
        yield stream, _size(stream)
        return
    try:
        f = open(path, "rb", buffering=1 << 20)  # noqa: SIM115 - closed below
    except OSError as e:
        raise EnvelopeError(f"--from-file {path}: {e.strerror or e}") from None
    with f:
        yield f, _size(f)


def _size(stream: BinaryIO) -> int | None:
    """Bytes left to read, for a regular file (also stdin redirected from one)."""
    try:
        st = os.fstat(stream.fileno())
        if stat.S_ISREG(st.st_mode):
            return max(0, st.st_size - stream.tell())
    except (OSError, ValueError):  # no fileno (a test's BytesIO), or not seekable
        pass
    return None


def submit_path(
    client: Client, path: str, *, progress: bool = False, chunk: int = CHUNK
) -> Summary:
    """Submit the lines of `path` (`-`: stdin) through `client`; what the CLI runs."""
    return FileSubmission(client, progress=progress, chunk=chunk).run_path(path)


def submit_file_cmd(
    path: str, settings: AppSettings, *, as_json: bool, client_options: Mapping[str, Any]
) -> int:
    """The CLI's `submit --from-file`: the summary on stdout (also when the broker stopped
    the run, before the error goes on to the CLI's guard), a progress bar on stderr only
    when stderr is a terminal."""
    from ringleader.client import Client

    with _opened(path) as (stream, size), Client(settings=settings, **client_options) as client:
        run = FileSubmission(client, progress=sys.stderr.isatty())
        try:
            run.run(stream, size)
        finally:
            _print_summary(run.summary, as_json)
    return run.summary.exit_code


def _print_summary(summary: Summary, as_json: bool) -> None:
    text = json.dumps(summary.to_json()) if as_json else summary.format_text()
    try:
        print(text, flush=True)
    except BrokenPipeError:  # `... | head`: the exit code still tells
        sys.stderr.close()


# --- the CLI's options ----------------------------------------------------------------------

# Options that describe one task: with --from-file each line gives its own.
_ONE_TASK = (
    ("args", "--args"),
    ("kwargs", "--kwargs"),
    ("key", "--key"),
    ("priority", "--priority"),
    ("idempotency_key", "--idempotency-key"),
    ("delay", "--delay"),
    ("eta", "--eta"),
    ("timeout", "--timeout"),
)


def usage_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with `submit`'s arguments as given, or None."""
    if args.from_file is None:
        if args.name is None:
            return "give a task name, or --from-file FILE"
        return "--json goes with --from-file" if args.json else None
    if args.name is not None:
        return "give a task name or --from-file FILE, not both"
    if args.wait:
        return "--wait does not go with --from-file (follow the tasks with `ringleader tail`)"
    for attr, option in _ONE_TASK:
        if getattr(args, attr) is not None:
            return f"{option} does not go with --from-file: each line gives its own"
    return None

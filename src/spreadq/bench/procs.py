"""The benchmark's child processes, and what ``/proc`` says about any process.

Child processes are ``python -m spreadq bench --role ...`` (hidden options of the same
command), so a benchmark needs nothing but an installed spreadq. CPU time and memory
are read from ``/proc/<pid>/stat`` and ``/proc/<pid>/status``, and the time a process
was ready to run but waited for a CPU, and how often it was switched in, from
``/proc/<pid>/schedstat`` (Linux); elsewhere the readers return None and the report
leaves those figures out.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final, Literal

import anyio
import anyio.abc

from spreadq.eventloop import Loop

__all__ = [
    "Memory",
    "Role",
    "command",
    "cpu_seconds",
    "memory",
    "parse_schedstat",
    "parse_schedstat_wait",
    "parse_stat_cpu",
    "parse_status_kb",
    "processes",
    "schedstat",
    "stop",
    "wait_seconds",
]

Role = Literal["daemon", "worker", "raw-receiver"]
"""The child processes: the embedded daemon, a worker, a raw flood receiver."""

STOP_WITHIN: Final = 10.0
"""Seconds stopped children have to drain and exit before they are killed."""


def command(role: Role, loop: Loop, log_level: str, *args: str) -> list[str]:
    """The command line of one child process of the benchmark."""
    return [
        sys.executable,
        "-m",
        "spreadq",
        "--log-level",
        log_level,
        "bench",
        "--role",
        role,
        "--loop",
        loop,
        *args,
    ]


@asynccontextmanager
async def processes(
    commands: Sequence[list[str]], *, stdout: bool = False
) -> AsyncIterator[list[anyio.abc.Process]]:
    """Start ``commands`` (their stdout piped when ``stdout``); on the way out stop them.

    Raises:
        OSError: a command could not be started (those started are stopped).
    """
    started: list[anyio.abc.Process] = []
    out = subprocess.PIPE if stdout else subprocess.DEVNULL
    try:
        for line in commands:
            started.append(
                await anyio.open_process(line, stdin=subprocess.DEVNULL, stdout=out, stderr=None)
            )
        yield started
    finally:
        with anyio.CancelScope(shield=True):
            await stop(started)


async def stop(started: Sequence[anyio.abc.Process]) -> None:
    """SIGTERM ``started`` (workers drain), wait up to 10 s, then kill what is left."""
    for process in started:
        if process.returncode is None:
            process.terminate()
    with anyio.move_on_after(STOP_WITHIN):
        for process in started:
            await process.wait()
    for process in started:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await process.aclose()


# --- /proc ------------------------------------------------------------------------------


def parse_stat_cpu(text: str, ticks_per_s: float) -> float:
    """User + system CPU seconds from the text of ``/proc/<pid>/stat``.

    The command name (field 2) is in parentheses and may hold spaces or parentheses
    itself, so fields are counted from the last ``)``: utime and stime are fields 14
    and 15 of the line.

    Raises:
        ValueError: the text is not a ``stat`` line.
    """
    head, paren, tail = text.rpartition(")")
    fields = tail.split()
    if not paren or "(" not in head or len(fields) < 13:
        raise ValueError(f"not a /proc/<pid>/stat line: {text[:80]!r}")
    return (int(fields[11]) + int(fields[12])) / ticks_per_s


def parse_schedstat(text: str) -> tuple[float, float, int]:
    """From the text of ``/proc/<pid>/schedstat``: seconds on a CPU, seconds ready to run
    but waiting for one (both nanoseconds in the file), and the time slices run (how
    often the thread was switched in).

    Raises:
        ValueError: the text is not a ``schedstat`` line.
    """
    fields = text.split()
    if len(fields) != 3:
        raise ValueError(f"not a /proc/<pid>/schedstat line: {text[:80]!r}")
    return int(fields[0]) / 1e9, int(fields[1]) / 1e9, int(fields[2])


def parse_schedstat_wait(text: str) -> float:
    """Seconds spent runnable but waiting for a CPU, from the text of
    ``/proc/<pid>/schedstat`` (:func:`parse_schedstat`'s second figure).

    Raises:
        ValueError: the text is not a ``schedstat`` line.
    """
    return parse_schedstat(text)[1]


def parse_status_kb(text: str, key: str) -> int | None:
    """The value of ``key`` (``VmRSS``, ``VmHWM``) in the text of ``/proc/<pid>/status``,
    in kB; None when the line is missing (a kernel thread, a zombie)."""
    prefix = key + ":"
    for line in text.splitlines():
        if line.startswith(prefix):
            value = line[len(prefix) :].split()
            return int(value[0]) if value else None
    return None


def cpu_seconds(pid: int | None = None) -> float | None:
    """CPU seconds (user + system) process ``pid`` has used; this process when None.

    None where ``/proc`` cannot be read (another system, a process gone).
    """
    if pid is None or pid == os.getpid():
        return time.process_time()
    try:
        with open(f"/proc/{pid}/stat") as file:
            text = file.read()
    except OSError:
        return None
    return parse_stat_cpu(text, os.sysconf("SC_CLK_TCK"))


def schedstat(pid: int | None = None) -> tuple[float, float, int] | None:
    """:func:`parse_schedstat` of process ``pid`` (its main thread; this process when
    None): seconds on a CPU, seconds waiting for one, and slices run. None where
    ``/proc/<pid>/schedstat`` cannot be read (another system, a kernel without scheduler
    statistics, a process gone)."""
    try:
        with open(f"/proc/{os.getpid() if pid is None else pid}/schedstat") as file:
            text = file.read()
    except OSError:
        return None
    try:
        return parse_schedstat(text)
    except ValueError:
        return None


def wait_seconds(pid: int | None = None) -> float | None:
    """Seconds process ``pid`` (its main thread; this process when None) has been ready
    to run and waited for a CPU: what a saturated machine adds to every latency.

    None where ``/proc/<pid>/schedstat`` cannot be read (another system, a kernel
    without scheduler statistics, a process gone).
    """
    read = schedstat(pid)
    return None if read is None else read[1]


@dataclass(frozen=True, slots=True)
class Memory:
    """A process's resident set now (``VmRSS``) and at its highest (``VmHWM``), MiB."""

    rss_mb: float
    peak_mb: float


def memory(pid: int | None = None) -> Memory | None:
    """Resident set now and at its peak of process ``pid`` (this one when None).

    None where ``/proc`` cannot be read.
    """
    path = "/proc/self/status" if pid is None else f"/proc/{pid}/status"
    try:
        with open(path) as file:
            text = file.read()
    except OSError:
        return None
    rss, peak = parse_status_kb(text, "VmRSS"), parse_status_kb(text, "VmHWM")
    if rss is None or peak is None:
        return None
    return Memory(rss / 1024, peak / 1024)

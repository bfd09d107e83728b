"""Give the C heap's freed pages back to the OS in long-lived model actors.

A CPU forward or backward pass allocates its activations through malloc; glibc keeps what
they free inside the process (its arenas and its grown mmap threshold), so an actor's
resident memory climbs to the high-water mark of the largest batch it has seen and stays
there. `malloc_trim(0)` returns those free pages. Measured on the tiny RM (scoring batches of
1-16 rows of 50-512 tokens, 1,500 calls): resident memory 442-479 MiB without it, a flat
435 MiB with it; the call took 1.8 ms against 62 ms of scoring, so `HeapTrimmer` runs it at
most once per `min_interval_s`. A no-op where libc has no malloc_trim (musl, macOS)."""

from __future__ import annotations

import ctypes
import ctypes.util
import time


def _malloc_trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


class HeapTrimmer:
    """`trimmer()` after a batch of work: malloc_trim(0), unless it ran < min_interval_s ago."""

    def __init__(self, min_interval_s: float = 1.0):
        self._trim = _malloc_trim()
        self.min_interval_s = min_interval_s
        self._last = float("-inf")

    @property
    def available(self) -> bool:
        return self._trim is not None

    def __call__(self) -> bool:
        """True when it trimmed now."""
        now = time.monotonic()
        if self._trim is None or now - self._last < self.min_interval_s:
            return False
        self._last = now
        self._trim(0)
        return True

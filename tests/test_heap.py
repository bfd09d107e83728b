"""repo_ray/heap.py: freed C-heap pages go back to the OS, at most once per interval."""

from __future__ import annotations

import sys

import psutil
import pytest
import torch

from repo_ray.heap import HeapTrimmer


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim is glibc's")
def test_trim_returns_the_pages_of_freed_tensors_that_the_allocator_kept():
    trim = HeapTrimmer(min_interval_s=0)
    assert trim.available
    proc = psutil.Process()
    trim()
    base = proc.memory_info().rss
    tensors = [torch.ones(16 * 1024) for _ in range(4000)]  # 64 KiB each (malloc's heap, not mmap): 250 MiB
    last = tensors[-1]  # the heap's top stays in use, so free() alone cannot shrink it
    del tensors
    kept = proc.memory_info().rss - base
    assert trim()
    left = proc.memory_info().rss - base
    assert kept > 200 * 2**20 and left < 50 * 2**20, (kept >> 20, left >> 20)
    assert float(last[0]) == 1.0


def test_trim_runs_at_most_once_per_interval(monkeypatch):
    calls = []
    trim = HeapTrimmer(min_interval_s=60)
    monkeypatch.setattr(trim, "_trim", calls.append)
    assert trim() and not trim() and calls == [0]
    trim._last -= 61
    assert trim() and calls == [0, 0]


def test_without_malloc_trim_it_is_a_no_op(monkeypatch):
    trim = HeapTrimmer(min_interval_s=0)
    monkeypatch.setattr(trim, "_trim", None)
    assert not trim.available and not trim()

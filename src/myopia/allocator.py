"""Keeping freed memory for reuse, for processes that allocate the same large tensors
over and over.

glibc's malloc maps every allocation above its mmap threshold (at most 32 MB) fresh from
the kernel and unmaps it when freed, and returns freed memory at the top of its heap
once more than 128 KB of it collects. A gradient split of SmolLM2 allocates and frees
540 MB of gradients per sequence, so every one of those pages is faulted in and zeroed
again, each time: on a 2-core VM a third of C1b's time went to the kernel. With both
thresholds raised, freed blocks stay in the heap and the next tensors of the same sizes
reuse them. C1b's quick budget of splits takes 0.58-0.73 of the time, the kernel's
share of the process falls from 6.9 s to 2.0 s, and the peak resident memory stays the
same (bench/RESULTS-allocator.txt).

A process-wide setting, so the library never makes it on import: the ``myopia`` command
makes it when it starts, and a script that wants the same calls ``keep_freed_memory``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

# mallopt's parameter numbers (glibc's malloc.h).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 1 << 30  # larger than any one tensor the report allocates
TRIM_THRESHOLD = 1 << 31


def on_glibc() -> bool:
    """Whether this process runs on Linux with glibc, whose malloc the thresholds tune."""
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; whether it took effect
    (False off glibc, where nothing is changed)."""
    if not on_glibc():
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )

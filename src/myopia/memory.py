"""Giving memory that was freed back to the operating system.

The report runs its sections one after another in one process, and each allocates and
frees its own large tensors (C1b's gradients, C5's hidden states, C8's caches). glibc's
malloc keeps freed blocks in its heaps for reuse, and it returns them to the system only
from the top of a heap: a block freed below one that is still in use stays resident. So
the next section starts from the memory the last one left behind, and the report's peak
is the sum of a section's own need and what earlier sections left fragmented.
``malloc_trim(0)`` hands every whole free page in the heaps back to the system, so each
section starts from its live data only. It changes no result, only where freed memory
goes, and costs milliseconds.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import platform


def on_glibc() -> bool:
    """Whether this process runs on Linux with glibc (whose malloc_trim this calls)."""
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def release_freed_memory() -> bool:
    """Collect unreachable objects, then give glibc's free heap pages back to the system;
    whether the second step could run (False off glibc: the collection alone)."""
    gc.collect()
    if not on_glibc():
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.malloc_trim(0)
    return True

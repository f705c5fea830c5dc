"""keep_freed_memory: freed large tensors stay in the process for reuse (glibc only)."""

import subprocess
import sys
import textwrap

import pytest

from myopia.allocator import on_glibc

# In a child process: the setting is process-wide and would change the test run's memory.
CHILD = textwrap.dedent(
    """
    import ctypes, sys
    import torch
    from myopia.allocator import keep_freed_memory

    class Mallinfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = Mallinfo2
    if sys.argv[1] == "keep":
        assert keep_freed_memory()
    tensor = torch.ones(64 << 20, dtype=torch.uint8)  # 64 MB, above any default threshold
    del tensor
    print(libc.mallinfo2().fordblks)  # bytes free in the heap, kept for reuse
    """
)


def free_heap_bytes_after_a_large_tensor(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True
    )
    return int(done.stdout.split()[-1])


@pytest.mark.skipif(not on_glibc(), reason="glibc only")
def test_a_freed_large_tensor_stays_in_the_heap_only_when_kept():
    assert free_heap_bytes_after_a_large_tensor("keep") >= 64 << 20
    assert free_heap_bytes_after_a_large_tensor("default") < 64 << 20  # mapped, returned

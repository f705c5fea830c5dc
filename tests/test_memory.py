"""Freed heap memory goes back to the system between report sections."""

import pytest

from myopia.memory import on_glibc, release_freed_memory


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.skipif(not on_glibc(), reason="malloc_trim is glibc's")
def test_freed_blocks_below_a_live_one_are_given_back():
    # 1600 blocks of 64 KB (below glibc's mmap threshold, so they come from the heap),
    # then one small block above them that stays alive: freeing the 100 MB below it
    # leaves them resident, since malloc returns memory only from the top of a heap.
    blocks = [bytearray(64 * 1024) for _ in range(1600)]
    for block in blocks:
        block[::4096] = b"x" * len(block[::4096])  # touch every page
    pinned = bytearray(1024)
    del blocks
    before = resident_bytes()
    assert release_freed_memory()
    after = resident_bytes()
    assert before - after > 50 * 2**20, (before, after)
    assert pinned  # alive to here

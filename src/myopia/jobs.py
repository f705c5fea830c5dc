"""Independent jobs side by side, one process and one thread each.

The report's small models (d_model <= 128) train on one CPU thread because their tensors
are too small to share between threads (``training.fit.SMALL_MODEL_THREADS``): trained
one after another, every other core idles. Their seeds, modes and arms are independent
runs, so they go to a pool of processes instead. A job is a call of a module-level
function on picklable arguments (a ``functools.partial``); each worker computes exactly
what the loop in one process computes, and the results come back in the jobs' order
(``tests/test_jobs.py`` compares the two bit for bit).

Workers are spawned (a forked copy of a process that has run torch's thread pools can
deadlock) when a :class:`Pool` first runs jobs, and stop when it closes: a few seconds of
start-up per pool, and no memory held once the measurement that opened it returns.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from contextlib import contextmanager
from typing import TypeVar

import torch

T = TypeVar("T")

# Each worker holds its own torch and transformers (about 0.4 GB resident), so more than a
# few would trade the report's memory bound for little: 4 covers the runs of one seed.
MAX_WORKERS = 4


def default_workers() -> int:
    """Processes for independent small-model runs: one per core this process may use, at
    most MAX_WORKERS; 1 where training runs on a GPU (the runs would share one device)."""
    if torch.cuda.is_available():
        return 1
    return max(1, min(MAX_WORKERS, len(os.sched_getaffinity(0))))


def _one_thread() -> None:
    # The worker's share of the machine is one core: torch and numpy's BLAS on one thread.
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(1)


class Pool:
    """Up to ``workers`` processes, started on first use and reused by every
    :meth:`run` until :meth:`close` (or the end of a ``with`` block): a measurement that
    trains in several batches pays the workers' start-up once."""

    def __init__(self, workers: int):
        self.workers = workers
        self._executor: ProcessPoolExecutor | None = None

    def run(
        self, jobs: Sequence[Callable[[], T]], on_done: Callable[[int, T], None] | None = None
    ) -> list[T]:
        """``[job() for job in jobs]`` (see :func:`run_jobs`)."""
        if self.workers <= 1 or len(jobs) <= 1:
            results = []
            for i, job in enumerate(jobs):
                results.append(job())
                if on_done is not None:
                    on_done(i, results[-1])
            return results
        if self._executor is None:
            context = multiprocessing.get_context("spawn")
            self._executor = ProcessPoolExecutor(self.workers, context, initializer=_one_thread)
        results: list = [None] * len(jobs)
        index = {self._executor.submit(job): i for i, job in enumerate(jobs)}
        pending = set(index)
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for future in done:
                    results[index[future]] = future.result()  # raises the job's error
                    if on_done is not None:
                        on_done(index[future], results[index[future]])
        except BaseException:
            self.close()
            raise
        return results

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextmanager
def pool_of(workers: int | Pool) -> Iterator[Pool]:
    """``workers`` itself if it is a running :class:`Pool` (the caller closes it), else
    a new pool of that many processes, closed on leaving."""
    if isinstance(workers, Pool):
        yield workers
        return
    with Pool(workers) as pool:
        yield pool


def run_jobs(
    jobs: Sequence[Callable[[], T]],
    workers: int | Pool = 1,
    on_done: Callable[[int, T], None] | None = None,
) -> list[T]:
    """``[job() for job in jobs]``, on up to ``workers`` processes (1: in this process, in
    order), or on a :class:`Pool` already running. ``on_done(i, result)`` runs here as
    each job finishes (for progress bars). The first job to fail stops the rest and its
    error is raised here."""
    with pool_of(workers if isinstance(workers, Pool) else min(workers, len(jobs))) as pool:
        return pool.run(jobs, on_done)

"""Runs on worker processes compute exactly what the loop in one process computes."""

import os
from functools import partial

import numpy as np
import pytest

from myopia.faithfulness.copy_detector import context_folds, shuffled_null
from myopia.jobs import Pool, run_jobs
from myopia.training.config import TrainConfig
from myopia.training.effort_allocation import EffortAllocationConfig, measure_effort_allocation
from myopia.training.effort_task import EffortTask
from myopia.training.gap import text_gap
from myopia.training.myopic_action import MyopicActionConfig, measure_myopic_action
from myopia.training.precaching_gap import PrecachingGapConfig, measure_precaching_gap

TINY_GAP = PrecachingGapConfig(n_seeds=2, steps=6, batch_size=8, warmup_steps=2, eval_every=3)
TINY_EFFORT = EffortAllocationConfig(widths=(8,), n_seeds=2, steps=3, batch_size=4, eval_batches=1)
TINY_CHOICE = MyopicActionConfig(n_seeds=2, steps=4, batch_size=8, warmup_steps=1, eval_every=2)


def measure_all(workers, text_runs):
    text = TrainConfig(
        model="fresh-llama:d_model=32,n_layers=1,n_heads=2,d_mlp=64",
        text=text_runs / "text.txt",
        seq_len=16,
        batch_size=4,
        steps=6,
        warmup_steps=2,
        eval_every=6,
        out=text_runs / f"workers-{workers if isinstance(workers, int) else 'pool'}",
    )
    return (
        text_gap(text, [0, 1], ("normal", "kv", "bigram"), 8, False, workers).to_dict(),
        measure_precaching_gap(TINY_GAP, workers=workers).to_dict(),
        measure_effort_allocation(
            TINY_EFFORT, task=EffortTask(seq_len=4), workers=workers
        ).to_dict(),
        measure_myopic_action(TINY_CHOICE, workers=workers).to_dict(),
        shuffled_control(workers),
    )


def shuffled_control(workers):
    """C6's shuffled-label refits on features with a planted signal."""
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(20), 4)
    labels = rng.integers(0, 2, len(groups))
    features = rng.normal(size=(len(groups), 6)) + labels[:, None]
    folds = context_folds(groups, 4, seed=0)
    interval, values = shuffled_null(features, labels, groups, folds, seed=0, n_shuffles=4,
                                     workers=workers)  # fmt: skip
    return interval.to_dict(), values


def without_timings(value):
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list | tuple):
        return [without_timings(v) for v in value]
    return value


def test_measurements_on_two_workers_equal_the_same_runs_in_one_process(tmp_path):
    lines = (f"Line {i}: the quick brown fox jumps over the lazy dog." for i in range(300))
    (tmp_path / "text.txt").write_text("\n".join(lines))
    in_process = measure_all(1, tmp_path)
    with Pool(2) as pool:
        pids = run_jobs([os.getpid] * 4, pool)
        on_workers = measure_all(pool, tmp_path)
    assert os.getpid() not in pids  # the pool's processes ran them, not this one
    # Bit for bit: the losses, curves, probes, P(P1) and shuffled-label AUROCs of every
    # run, in the same order.
    assert without_timings(on_workers) == without_timings(in_process)


def test_results_come_back_in_the_jobs_order_and_each_is_reported_once():
    seen = []
    results = run_jobs([partial(pow, 2, k) for k in range(6)], 2, lambda i, r: seen.append((i, r)))
    assert results == [2**k for k in range(6)]
    assert sorted(seen) == list(enumerate(results))


def test_a_failing_job_raises_its_error_here():
    with pytest.raises(ValueError, match="invalid literal"):
        run_jobs([partial(int, "7"), partial(int, "not a number")], 2)

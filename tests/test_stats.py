"""Confidence intervals: coverage by simulation, against scipy, and honest edge cases."""

import dataclasses
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from myopia.stats import Interval, bootstrap_ci, mean_ci, paired_difference_ci


def test_t_interval_covers_true_mean_95_percent_of_the_time():
    # 2000 repeats: the binomial standard error of the coverage is ~0.5%, so [93%, 97%]
    # is four standard errors each side of 95%.
    rng = np.random.default_rng(1234)
    true_mean = 3.0
    draws = rng.normal(true_mean, 2.0, size=(2000, 10))
    covered = sum(not mean_ci(row).excludes(true_mean) for row in draws)
    assert 0.93 <= covered / len(draws) <= 0.97


def test_t_interval_matches_scipy():
    values = [1.2, 0.7, 2.3, 1.9, 1.1, 0.4]
    ci = mean_ci(values, level=0.9)
    low, high = scipy_stats.t.interval(
        0.9, df=len(values) - 1, loc=np.mean(values), scale=scipy_stats.sem(values)
    )
    assert ci.low == pytest.approx(low)
    assert ci.high == pytest.approx(high)
    assert ci.mean == pytest.approx(np.mean(values))
    assert (ci.n, ci.level) == (6, 0.9)


def test_higher_level_gives_wider_interval():
    values = np.random.default_rng(0).normal(size=20)
    assert mean_ci(values, 0.99).width > mean_ci(values, 0.95).width > mean_ci(values, 0.5).width


@pytest.mark.parametrize("make_ci", [mean_ci, bootstrap_ci], ids=["t", "bootstrap"])
def test_single_value_gives_infinite_interval(make_ci):
    ci = make_ci([4.2])
    assert ci.mean == 4.2
    assert ci.low == -math.inf and ci.high == math.inf
    assert ci.width == math.inf
    assert not ci.excludes(1e300) and not ci.above(-1e300) and not ci.below(1e300)


def test_bootstrap_contains_mean_and_shrinks_with_n():
    rng = np.random.default_rng(7)
    population_mean = 1.0  # exponential: skewed, where the bootstrap earns its keep
    widths = []
    for n in (100, 1000, 10000):
        sample = rng.exponential(population_mean, size=n)
        ci = bootstrap_ci(sample, n_resamples=500, seed=0)
        assert ci.low <= sample.mean() <= ci.high
        assert ci.mean == pytest.approx(sample.mean())
        widths.append(ci.width)
    assert not bootstrap_ci(sample, n_resamples=500).excludes(population_mean)
    # Width falls like 1/sqrt(n): about 3.2x per tenfold n.
    assert widths[0] > 2 * widths[1] > 4 * widths[2]


def test_bootstrap_is_reproducible_and_seed_dependent():
    sample = np.random.default_rng(3).normal(size=50)
    assert bootstrap_ci(sample, seed=5) == bootstrap_ci(sample, seed=5)
    assert bootstrap_ci(sample, seed=5) != bootstrap_ci(sample, seed=6)


def test_bootstrap_other_statistic():
    sample = np.concatenate([np.zeros(60), np.full(40, 100.0)])  # median 0, mean 40
    ci = bootstrap_ci(sample, statistic=np.median, n_resamples=300)
    assert ci.mean == 0.0
    assert ci.excludes(40.0)


def test_bootstrap_agrees_with_t_for_normal_data():
    sample = np.random.default_rng(11).normal(size=400)
    t_ci, boot_ci = mean_ci(sample), bootstrap_ci(sample)
    assert boot_ci.low == pytest.approx(t_ci.low, abs=0.02)
    assert boot_ci.high == pytest.approx(t_ci.high, abs=0.02)


def test_paired_difference_removes_shared_variation():
    rng = np.random.default_rng(2)
    item_effect = rng.normal(0, 10, size=30)  # large, shared by both conditions
    a = item_effect + 0.5 + rng.normal(0, 0.1, size=30)
    b = item_effect + rng.normal(0, 0.1, size=30)
    diff = paired_difference_ci(a, b)
    assert diff.above(0.0)
    assert diff.mean == pytest.approx(np.mean(a - b))
    assert diff == mean_ci(a - b)
    # Unpaired, the item effect swamps the difference: the intervals overlap.
    assert mean_ci(a).low < mean_ci(b).high


def test_interval_comparisons():
    ci = Interval(mean=1.0, low=0.5, high=1.5, n=10, level=0.95)
    assert ci.above(0.0) and not ci.above(0.5) and not ci.above(1.0)
    assert ci.below(2.0) and not ci.below(1.5) and not ci.below(1.0)
    assert ci.excludes(0.0) and ci.excludes(2.0)
    assert not ci.excludes(0.5) and not ci.excludes(1.0) and not ci.excludes(1.5)


def test_interval_to_dict_and_frozen():
    ci = mean_ci([1.0, 2.0, 3.0])
    d = ci.to_dict()
    assert d == {"mean": 2.0, "low": ci.low, "high": ci.high, "n": 3, "level": 0.95}
    assert all(isinstance(d[k], float) for k in ("mean", "low", "high"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        ci.mean = 0.0


@pytest.mark.parametrize("make_ci", [mean_ci, bootstrap_ci], ids=["t", "bootstrap"])
@pytest.mark.parametrize(
    "values, message",
    [
        ([], "empty"),
        (np.array([]), "empty"),
        ([1.0, float("nan")], "NaN"),
        ([1.0, float("inf")], "infinite"),
        ([[1.0, 2.0], [3.0, 4.0]], "one-dimensional"),
    ],
)
def test_invalid_values_raise(make_ci, values, message):
    with pytest.raises(ValueError, match=message):
        make_ci(values)


@pytest.mark.parametrize("level", [0.0, 1.0, 95, -0.5])
def test_invalid_level_raises(level):
    with pytest.raises(ValueError, match="level"):
        mean_ci([1.0, 2.0], level=level)
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci([1.0, 2.0], level=level)


def test_paired_validation():
    with pytest.raises(ValueError, match="equal length"):
        paired_difference_ci([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="empty"):
        paired_difference_ci([], [])


def test_bootstrap_needs_resamples():
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_ci([1.0, 2.0], n_resamples=0)


def test_interval_text_names_estimate_level_and_bounds():
    interval = Interval(mean=0.4351, low=0.2574, high=0.6128, n=3, level=0.95)
    assert interval.text() == "+0.435 (95% CI [+0.257, +0.613])"
    assert interval.text(".2f") == "0.44 (95% CI [0.26, 0.61])"


def test_cluster_bootstrap_is_wider_than_treating_clustered_items_as_independent():
    from myopia.stats import cluster_bootstrap_mean

    rng = np.random.default_rng(0)
    cluster_means = rng.normal(size=20)
    values = np.repeat(cluster_means, 10) + 0.1 * rng.normal(size=200)  # 20 clusters of 10
    clusters = [f"c{i}" for i in np.repeat(np.arange(20), 10)]
    clustered = cluster_bootstrap_mean(values, clusters)
    independent = bootstrap_ci(values)
    assert clustered.mean == pytest.approx(values.mean())
    assert clustered.width > 2 * independent.width  # ~sqrt(10) wider: 20 units, not 200
    lone = cluster_bootstrap_mean([1.0, 0.0], ["a", "a"])
    assert lone.mean == 0.5 and lone.low == -np.inf and lone.high == np.inf


def test_n_for_half_width_gives_the_width_it_promises():
    from myopia.stats import mean_ci, n_for_half_width

    rng = np.random.default_rng(1)
    n = n_for_half_width(pilot_sd=1.0, half_width=0.25)
    assert 60 < n < 70  # 1.96² / 0.25² ≈ 61.5, plus the t quantile's excess
    widths = [mean_ci(rng.normal(0, 1, n)).width / 2 for _ in range(400)]
    assert abs(np.median(widths) - 0.25) < 0.02  # the planned half-width, at the pilot sd
    assert n_for_half_width(1.0, 0.25, minimum=100) == 100
    assert n_for_half_width(0.0, 0.1) == 2

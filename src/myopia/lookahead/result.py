"""What the probes scored on the held-out windows, per layer, offset and window, with
bootstrap intervals."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from myopia.stats import Interval, bootstrap_ci


@dataclass
class LookaheadResult:
    """Per-sequence held-out accuracies of every probe and baseline, and the choices made
    on the validation windows. Arrays are indexed [layer position, offset position, window]."""

    offsets: list[int]
    layers: list[int]
    families: list[str]
    n_classes: int
    level: float
    n_resamples: int
    seed: int
    probe_eval: dict[str, np.ndarray]  # family -> (L, O, N_eval) accuracy per window
    probe_val: dict[str, np.ndarray]  # family -> (L, O) validation accuracy
    penalty: dict[str, np.ndarray]  # family -> (L, O) the ridge penalty GCV chose
    baseline_eval: dict[str, np.ndarray]  # name -> (O, N_eval)
    baseline_val: dict[str, np.ndarray]  # name -> (O,)
    coverage: np.ndarray  # (O,) share of held-out targets within the classes
    selected: dict[int, dict]  # k -> {"family", "layer", "baseline"}, chosen on validation
    sizes: dict = field(default_factory=dict)

    def _o(self, k: int) -> int:
        return self.offsets.index(k)

    def accuracy(self, family: str, layer: int, k: int) -> np.ndarray:
        return self.probe_eval[family][self.layers.index(layer), self._o(k)]

    def _interval(self, values: np.ndarray) -> Interval:
        rows = bootstrap_intervals(values[None], self.level, self.n_resamples, self.seed)
        return Interval.from_dict(rows[0])

    def selected_accuracy(self, k: int) -> Interval:
        """Held-out accuracy of the probe chosen on validation at offset ``k``."""
        chosen = self.selected[k]
        return self._interval(self.accuracy(chosen["family"], chosen["layer"], k))

    def baseline_accuracy(self, name: str, k: int) -> Interval:
        return self._interval(self.baseline_eval[name][self._o(k)])

    def selected_difference(self, k: int) -> Interval:
        """Held-out accuracy of the validation-chosen probe minus the validation-chosen
        baseline at offset ``k``: paired percentile bootstrap over windows."""
        chosen = self.selected[k]
        probe = self.accuracy(chosen["family"], chosen["layer"], k)
        base = self.baseline_eval[chosen["baseline"]][self._o(k)]
        # Bootstrapped in whole positions per window (integers, so equal accuracies differ
        # by exactly 0), then scaled back to a share of positions.
        per_window = self.sizes["positions_per_window"]
        counts = bootstrap_ci(
            np.rint((probe - base) * per_window),
            level=self.level,
            n_resamples=self.n_resamples,
            seed=self.seed,
        )
        return Interval(
            counts.mean / per_window,
            counts.low / per_window,
            counts.high / per_window,
            counts.n,
            counts.level,
        )

    def curves(self) -> dict:
        """Held-out accuracy per family, layer and k with bootstrap intervals (windows
        resampled jointly for all curves), and the baselines: for plots and tables."""
        series = {}
        for family in self.families:
            table = self.probe_eval[family]  # (L, O, N)
            flat = bootstrap_intervals(
                table.reshape(-1, table.shape[-1]), self.level, self.n_resamples, self.seed
            )
            series[family] = {
                str(k): [flat[li * len(self.offsets) + oi] for li in range(len(self.layers))]
                for oi, k in enumerate(self.offsets)
            }
        baselines = {
            name: dict(
                zip(
                    map(str, self.offsets),
                    bootstrap_intervals(values, self.level, self.n_resamples, self.seed),
                    strict=True,
                )
            )
            for name, values in self.baseline_eval.items()
        }
        return {"layers": self.layers, "probes": series, "baselines": baselines}

    def to_dict(self) -> dict:
        return {
            "offsets": self.offsets,
            "layers": self.layers,
            "families": self.families,
            "n_classes": self.n_classes,
            "coverage": dict(zip(map(str, self.offsets), self.coverage.tolist(), strict=True)),
            "selected": {str(k): v for k, v in self.selected.items()},
            "validation": {
                "probes": {f: v.tolist() for f, v in self.probe_val.items()},
                "baselines": {b: v.tolist() for b, v in self.baseline_val.items()},
            },
            "penalty": {f: v.tolist() for f, v in self.penalty.items()},
            "sizes": self.sizes,
            "ci": f"{self.level:.0%} percentile bootstrap over held-out windows "
            f"({self.n_resamples} resamples)",
        }


def bootstrap_intervals(
    values: np.ndarray, level: float = 0.95, n_resamples: int = 2000, seed: int = 0
) -> list[dict]:
    """Percentile bootstrap intervals of the mean of each row of ``values`` (m, n), the
    columns (windows) resampled jointly for all rows: ``Interval.to_dict()`` per row.
    The same method as ``myopia.stats.bootstrap_ci``, vectorised for many curves."""
    values = np.asarray(values, dtype=np.float64)
    m, n = values.shape
    means = values.mean(1)
    if n == 1:
        return [Interval(float(v), -math.inf, math.inf, 1, level).to_dict() for v in means]
    draws = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))
    counts = np.stack([np.bincount(row, minlength=n) for row in draws])  # (R, n)
    replicates = values @ counts.T / n  # (m, R)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(replicates, [alpha, 1.0 - alpha], axis=1)
    return [
        Interval(float(means[i]), float(low[i]), float(high[i]), n, level).to_dict()
        for i in range(m)
    ]

"""Linear probes: how much of a quantity a linear read-out of activations recovers."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import RidgeCV
from sklearn.metrics import r2_score

from myopia.threads import one_blas_thread


@one_blas_thread
def ridge_r2(
    features: np.ndarray, targets: np.ndarray, fit_fraction: float = 0.5, seed: int = 0
) -> np.ndarray:
    """Held-out R² of a ridge regression from ``features`` (N, d) to each column of
    ``targets`` (N, k): fit on a random ``fit_fraction`` of the rows, score on the rest.

    The penalty is chosen by leave-one-out cross-validation on the fitting rows, per
    target, so a probe on a 128-dimensional residual stream does not simply memorise.
    """
    order = np.random.default_rng(seed).permutation(len(features))
    n_fit = int(len(features) * fit_fraction)
    fit, held_out = order[:n_fit], order[n_fit:]
    probe = RidgeCV(alphas=np.logspace(-3, 3, 13), alpha_per_target=True)
    probe.fit(features[fit], targets[fit])
    predicted = probe.predict(features[held_out]).reshape(len(held_out), -1)
    truth = targets[held_out].reshape(len(held_out), -1)
    return np.array([r2_score(truth[:, j], predicted[:, j]) for j in range(truth.shape[1])])

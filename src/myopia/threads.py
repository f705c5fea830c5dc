"""Thread counts for small dense linear algebra.

The scikit-learn fits here are small (a few hundred rows and features: C6's detectors,
C9's probes, C1a's ridge read-outs). numpy's and scipy's BLAS would split every product
over all cores, and on products this small the threads cost more to start and join than
the product takes; on a machine shared with other jobs they also wait for each other.
C6's detectors on a 2-core machine: 2.2 s on one BLAS thread, 14-48 s on two under load.
"""

from __future__ import annotations

from threadpoolctl import threadpool_limits

# Decorator: numpy's and scipy's BLAS on one thread while the function runs (torch's own
# threads are not touched), restored afterwards.
one_blas_thread = threadpool_limits.wrap(limits=1, user_api="blas")

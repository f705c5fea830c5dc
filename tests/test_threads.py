"""Small scikit-learn fits run with numpy's and scipy's BLAS on one thread, and only them."""

from threadpoolctl import threadpool_info

from myopia.threads import one_blas_thread


def blas_threads() -> list[int]:
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_one_blas_thread_inside_and_the_setting_restored_after():
    before = blas_threads()

    @one_blas_thread
    def inside() -> list[int]:
        return blas_threads()

    assert inside() and all(n == 1 for n in inside())
    assert blas_threads() == before

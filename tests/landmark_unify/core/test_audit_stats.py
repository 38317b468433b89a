"""The audit's NaN-aware order statistics agree with NumPy's (which they replace for speed)."""
from __future__ import annotations

import warnings

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from landmark_unify.core.audit import _nan_median3, nan_median, nan_quantile

values = st.one_of(st.floats(-1e6, 1e6, allow_nan=False, width=64), st.just(np.nan))


@settings(max_examples=200, deadline=None)
@given(x=hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=9), elements=values),
       q=st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]), data=st.data())
def test_nan_quantile_is_numpys(x, q, data):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = np.nanquantile(x, q, axis=axis)
        want_median = np.nanmedian(x, axis=axis)
    np.testing.assert_allclose(nan_quantile(x, q, axis), want, rtol=1e-12, atol=1e-9, equal_nan=True)
    np.testing.assert_allclose(nan_median(x, axis), want_median, rtol=1e-12, atol=1e-9, equal_nan=True)


@settings(max_examples=200, deadline=None)
@given(x=hnp.arrays(np.float64, st.tuples(st.just(3), st.integers(1, 20)), elements=values))
def test_median_of_three_is_nanmedian(x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = np.nanmedian(x, axis=0)
    np.testing.assert_allclose(_nan_median3(*x), want, rtol=1e-12, atol=1e-9, equal_nan=True)

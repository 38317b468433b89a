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


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), missing=st.floats(0, 0.3))
def test_components_are_the_plain_definition(seed, missing):
    """Residual components along each point's axes; on an outline the tangent one relative to the median
    of the point's and its neighbours' (written the slow, obvious way here)."""
    from landmark_unify.core.audit import _components, neighbours

    rng = np.random.default_rng(seed)
    r = rng.normal(size=(7, 98)) + 1j * rng.normal(size=(7, 98))
    r[rng.random(r.shape) < missing] = np.nan
    axes = np.exp(1j * rng.uniform(0, 2 * np.pi, (98, 2)))
    want = np.stack([(np.conj(axes[:, j])[None] * r).real for j in range(2)], -1)
    nbr = neighbours()
    t = want[..., 1].copy()
    for k in range(98):
        if (nbr[k] < 0).all():
            continue
        trio = np.stack([t[:, n] if n >= 0 else np.full(len(t), np.nan) for n in (nbr[k, 0], k, nbr[k, 1])], 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            local = np.nanmedian(trio, 1)
        want[:, k, 1] = t[:, k] - np.where(np.isfinite(local), local, t[:, k])
    np.testing.assert_allclose(_components(r, axes), want, rtol=1e-12, atol=1e-12, equal_nan=True)

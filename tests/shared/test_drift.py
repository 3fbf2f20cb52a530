"""The population stability index and the p_abnormal buckets drift monitoring uses."""

from __future__ import annotations

import numpy as np
import pytest

from ecg_shared.drift import BUCKET_EDGES, bucket_counts, psi, reading


def test_buckets_follow_prometheus_le_edges():
    assert bucket_counts([0.0, 0.1, 0.1001, 0.55, 0.999, 1.0]) == [2, 1, 0, 0, 0, 1, 0, 0, 0, 2]
    assert len(BUCKET_EDGES) == 10 and BUCKET_EDGES[-1] == 1.0


def test_psi_is_zero_for_the_same_shares_and_grows_with_the_shift():
    reference = bucket_counts(np.random.default_rng(0).beta(2, 5, 5000))
    assert psi(reference, [2 * n for n in reference]) == pytest.approx(0.0, abs=1e-12)
    slightly = bucket_counts(np.random.default_rng(1).beta(2.2, 5, 5000))
    shifted = bucket_counts(np.random.default_rng(2).beta(5, 2, 5000))
    assert reading(psi(reference, slightly)) == "stable"
    assert reading(psi(reference, shifted)) == "significant shift" and psi(reference, shifted) > 1
    assert psi(reference, [0] * 10) is None and reading(None) == "no data"
    with pytest.raises(ValueError, match="differ in length"):
        psi([1, 2], [1, 2, 3])

"""derive_limb_leads: Einthoven's and Goldberger's relations, and the record saying which leads were derived."""

import numpy as np

from ecg_shared.formats import Record
from ecg_shared.formats.leads import derive_limb_leads


def _record(names, columns):
    return Record(signal=np.column_stack(columns), sampling_rate=500, lead_names=names, metadata={"format": "test"})


def test_missing_limb_leads_follow_einthoven_and_goldberger():
    rng = np.random.default_rng(0)
    lead_i, lead_ii, v1 = rng.normal(size=(3, 1000)).astype(np.float32)
    derived = derive_limb_leads(_record(["I", "II", "V1"], [lead_i, lead_ii, v1]))
    assert derived.lead_names == ["I", "II", "III", "aVR", "aVL", "aVF", "V1"]
    assert derived.metadata["derived_leads"] == ["III", "aVR", "aVL", "aVF"]
    assert derived.metadata["format"] == "test"
    np.testing.assert_allclose(derived.lead("III"), lead_ii - lead_i, atol=1e-6)
    np.testing.assert_allclose(derived.lead("aVR"), -(lead_i + lead_ii) / 2, atol=1e-6)
    np.testing.assert_allclose(derived.lead("aVL"), lead_i - lead_ii / 2, atol=1e-6)
    np.testing.assert_allclose(derived.lead("aVF"), lead_ii - lead_i / 2, atol=1e-6)
    # the augmented leads sum to zero, as on a real cart
    np.testing.assert_allclose(derived.lead("aVR") + derived.lead("aVL") + derived.lead("aVF"), 0, atol=1e-5)
    np.testing.assert_array_equal(derived.lead("V1"), v1)


def test_only_the_missing_leads_are_derived_and_extra_leads_follow_the_standard_ones():
    ones = np.ones(10, dtype=np.float32)
    record = _record(["V4R", "I", "II", "III"], [ones * 9, ones, ones * 3, ones * 7])
    derived = derive_limb_leads(record)
    assert derived.lead_names == ["I", "II", "III", "aVR", "aVL", "aVF", "V4R"]
    assert derived.metadata["derived_leads"] == ["aVR", "aVL", "aVF"]
    np.testing.assert_array_equal(derived.lead("III"), ones * 7)  # recorded, not recomputed


def test_records_without_i_and_ii_or_with_all_limb_leads_are_unchanged():
    ones = np.ones(10, dtype=np.float32)
    single = _record(["II"], [ones])
    assert derive_limb_leads(single) is single
    full = _record(["I", "II", "III", "aVR", "aVL", "aVF"], [ones] * 6)
    assert derive_limb_leads(full) is full
    assert "derived_leads" not in full.metadata


def test_in_standard_order_puts_the_standard_leads_first():
    from ecg_shared.formats.leads import in_standard_order

    names = ["V1", "I", "V4R", "II", "aVF"]
    record = _record(names, [np.full(4, i, dtype=np.float32) for i in range(len(names))])
    ordered = in_standard_order(record)
    assert ordered.lead_names == ["I", "II", "aVF", "V1", "V4R"]
    assert [int(ordered.lead(n)[0]) for n in ordered.lead_names] == [1, 3, 4, 0, 2]
    assert in_standard_order(ordered) is ordered


def test_reordering_keeps_each_leads_gain_and_deriving_drops_them():
    """A record's ADC gains (its storage hint) follow its leads when they are reordered; derived leads are computed
    in millivolts, so a record with them has none (it is stored as float32)."""
    from ecg_shared.formats.leads import in_standard_order

    counts = np.arange(30, dtype=np.float64).reshape(10, 3)
    gains = (100.0, 200.0, 400.0)
    signal = (counts / np.array(gains)).astype(np.float32)
    record = Record(signal, 500, ["V1", "I", "II"], counts_per_mv=gains)
    ordered = in_standard_order(record)
    assert ordered.lead_names == ["I", "II", "V1"] and ordered.counts_per_mv == (200.0, 400.0, 100.0)
    np.testing.assert_array_equal(ordered.lead("V1"), record.lead("V1"))
    assert derive_limb_leads(ordered).counts_per_mv is None

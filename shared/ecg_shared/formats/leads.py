"""Leads a device did not store, computed from the ones it did.

Carts such as GE MUSE store only I, II and V1–V6: the other four limb leads are linear in I and II, by Einthoven's law
(III = II − I) and Goldberger's augmented leads (aVR = −(I + II)/2, aVL = I − II/2, aVF = II − I/2). Every reader that
meets such a record calls :func:`derive_limb_leads`, so the derivation, and how the record says which leads were
derived, exist once.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ecg_shared.formats.record import STANDARD_12_LEADS, Record

DERIVED_LIMB_LEADS = ("III", "aVR", "aVL", "aVF")

_FROM_I_AND_II = {
    "III": (-1.0, 1.0),
    "aVR": (-0.5, -0.5),
    "aVL": (1.0, -0.5),
    "aVF": (-0.5, 1.0),
}


def in_standard_order(record: Record) -> Record:
    """The standard leads first, in the standard order (I, II, III, aVR, aVL, aVF, V1–V6), then any others (V3R, V7,
    …) in their original order; the record itself when already so."""
    names = list(record.lead_names)
    ordered = [lead for lead in STANDARD_12_LEADS if lead in names] + [n for n in names if n not in STANDARD_12_LEADS]
    if ordered == names:
        return record
    columns = [names.index(lead) for lead in ordered]
    gains = record.counts_per_mv
    return replace(
        record,
        signal=record.signal[:, columns],
        lead_names=ordered,
        counts_per_mv=None if gains is None else tuple(gains[c] for c in columns),
    )


def derive_limb_leads(record: Record) -> Record:
    """Add whichever of III, aVR, aVL and aVF are missing, computed from I and II.

    The record comes back unchanged when it lacks I or II, or already has all four. Otherwise the standard leads come
    first, in the standard order, followed by any others (V3R, V7, …) in their original order, and
    ``metadata["derived_leads"]`` names the leads that were computed rather than recorded.
    """
    names = list(record.lead_names)
    missing = [lead for lead in DERIVED_LIMB_LEADS if lead not in names]
    if not missing or "I" not in names or "II" not in names:
        return record
    lead_i = record.signal[:, names.index("I")].astype(np.float64)
    lead_ii = record.signal[:, names.index("II")].astype(np.float64)
    columns = {name: record.signal[:, index] for index, name in enumerate(names)}
    for lead in missing:
        weight_i, weight_ii = _FROM_I_AND_II[lead]
        columns[lead] = (weight_i * lead_i + weight_ii * lead_ii).astype(np.float32)
    ordered = [lead for lead in STANDARD_12_LEADS if lead in columns]
    ordered += [lead for lead in names if lead not in STANDARD_12_LEADS]
    metadata = dict(record.metadata)
    metadata["derived_leads"] = [*metadata.get("derived_leads", []), *missing]
    return replace(
        record,
        signal=np.column_stack([columns[lead] for lead in ordered]),
        lead_names=ordered,
        metadata=metadata,
        counts_per_mv=None,  # the derived leads are computed in millivolts, not counts: stored as float32
    )

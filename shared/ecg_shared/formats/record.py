"""The in-memory ECG record every reader returns and every consumer takes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

STANDARD_12_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")

_CANONICAL = {name.upper(): name for name in STANDARD_12_LEADS}


class EcgFormatError(ValueError):
    """Raised by every reader for input it cannot read; the message names the problem."""


def normalise_lead_name(name: str) -> str:
    """Map spellings such as ``AVR``, ``avr`` or ``i`` to the standard ``aVR`` / ``I``; keep others (``MLII``) as is."""
    stripped = str(name).strip()
    return _CANONICAL.get(stripped.upper(), stripped)


def counts_to_mv(counts: np.ndarray, counts_per_mv: np.ndarray | float) -> np.ndarray:
    """Whole ADC counts to float32 millivolts: ``counts / counts_per_mv`` in float64, then rounded to float32 (as
    wfdb's digital-to-physical conversion computes it). A reader that builds its signal this way can pass
    ``counts_per_mv`` to its :class:`Record`, and the signal is then stored as the counts (ecg_shared.db.models).

    >>> counts_to_mv(np.array([[1241, -2482]]), 1241.0)
    array([[ 1., -2.]], dtype=float32)
    """
    return np.divide(counts, counts_per_mv, dtype=np.float64).astype(np.float32)


@dataclass
class Record:
    """An ECG recording: ``signal`` is float32 millivolts of shape (n_samples, n_leads).

    ``counts_per_mv``, where the reader knows it, is each lead's ADC gain: the signal is whole counts divided by it
    (:func:`counts_to_mv`). It is a hint for storage only; a record built from another one leaves it out.
    """

    signal: np.ndarray
    sampling_rate: float
    lead_names: list[str]
    metadata: dict[str, Any] = field(default_factory=dict)
    # The patient identifiers the file carried (ecg_shared.formats.identifiers), in memory only: used to mask them in
    # names before storing; never stored, logged or returned.
    identifiers: frozenset[str] = field(default_factory=frozenset, repr=False, compare=False)
    counts_per_mv: tuple[float, ...] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        signal = np.asarray(self.signal, dtype=np.float32)
        if signal.ndim == 1:
            signal = signal[:, None]
        if signal.ndim != 2:
            raise EcgFormatError(f"signal must be 2-D (samples, leads), got shape {signal.shape}")
        if len(self.lead_names) != signal.shape[1]:
            raise EcgFormatError(f"{signal.shape[1]} signal columns but {len(self.lead_names)} lead names")
        if not self.sampling_rate or not np.isfinite(self.sampling_rate) or self.sampling_rate <= 0:
            raise EcgFormatError(f"sampling rate must be a positive number, got {self.sampling_rate!r}")
        if self.counts_per_mv is not None:
            gains = tuple(float(g) for g in self.counts_per_mv)
            if len(gains) != signal.shape[1] or not all(np.isfinite(g) and g > 0 for g in gains):
                raise EcgFormatError(f"counts_per_mv must be one positive gain per lead, got {self.counts_per_mv!r}")
            self.counts_per_mv = gains
        self.signal = signal
        self.sampling_rate = float(self.sampling_rate)
        self.lead_names = [normalise_lead_name(n) for n in self.lead_names]

    @property
    def n_samples(self) -> int:
        return int(self.signal.shape[0])

    @property
    def n_leads(self) -> int:
        return int(self.signal.shape[1])

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.sampling_rate

    @property
    def label(self) -> str | None:
        return self.metadata.get("label")

    @property
    def format(self) -> str | None:
        return self.metadata.get("format")

    def lead(self, name: str) -> np.ndarray:
        """One lead by name (any spelling :func:`normalise_lead_name` understands)."""
        wanted = normalise_lead_name(name)
        try:
            return self.signal[:, self.lead_names.index(wanted)]
        except ValueError:
            raise KeyError(f"lead {name!r} not in record (has {', '.join(self.lead_names)})") from None


def check_expanded_size(sizes: list[int], what: str) -> None:
    """Refuse an archive (zip, .npz) whose members expand beyond ``ECG_MAX_UNZIPPED_BYTES`` before inflating it.

    The sizes are the ones the archive declares; Python's zipfile stops at them (and fails the CRC check), so an
    archive that lies about them cannot expand further.
    """
    from ecg_shared.settings import get_settings

    limit = get_settings().max_unzipped_bytes
    total = sum(sizes)
    if total > limit:
        raise EcgFormatError(
            f"{what} expands to {total} bytes, beyond the {limit} bytes an ECG may take "
            "(setting ECG_MAX_UNZIPPED_BYTES)"
        )

"""Wellnest 12-lead device blobs: headerless 16-byte frames at 500 Hz (format in docs/formats.md).

Frame layout, one frame per sample time::

    byte 0..1    sync: 0xBA 0x88
    byte 2..10   low 8 bits of channels 0..8 (I, II, III, V1..V6)
    byte 11..14  high nibbles of channel pairs (0,1) (2,3) (4,5) (6,7): high nibble even channel, low nibble odd
    byte 15      high nibble: channel 8's high 4 bits

Each value is 12-bit unsigned with zero at 2048. aVR, aVL and aVF are derived (Einthoven/Goldberger).
A frame that does not start with the sync bytes is dropped; the reader resynchronises on the next confirmed sync
(one followed by another sync a frame later), fills the dropped samples by linear interpolation so the time axis
stays true, and reports the count in ``metadata["dropped_frames"]`` and, in plain words, in ``metadata["repairs"]``
(as it does for trailing bytes that make no whole frame).
"""

from __future__ import annotations

import numpy as np

from ecg_shared.formats.record import STANDARD_12_LEADS, EcgFormatError, Record, counts_to_mv

FRAME_BYTES = 16
SAMPLING_RATE = 500.0
SYNC = (0xBA, 0x88)
ZERO = 2048
DEVICE_CHANNELS = ("I", "II", "III", "V1", "V2", "V3", "V4", "V5", "V6")


def looks_like_wellnest(data: bytes) -> bool:
    """True when most 16-byte strides of the blob start with the frame sync bytes."""
    if len(data) < FRAME_BYTES or data[0] != SYNC[0] or data[1] != SYNC[1]:
        return False
    buf = np.frombuffer(data, dtype=np.uint8)
    usable = buf[: len(buf) // FRAME_BYTES * FRAME_BYTES].reshape(-1, FRAME_BYTES)
    return bool(np.mean((usable[:, 0] == SYNC[0]) & (usable[:, 1] == SYNC[1])) > 0.5)


def _frame_offsets(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Byte offsets of good frames, and each one's sample index on the true time axis."""
    n = len(buf)
    if n % FRAME_BYTES == 0:
        frames = buf.reshape(-1, FRAME_BYTES)
        if np.all(frames[:, 0] == SYNC[0]) and np.all(frames[:, 1] == SYNC[1]):
            offsets = np.arange(0, n, FRAME_BYTES)
            return offsets, np.arange(len(offsets))

    is_sync = np.zeros(n + FRAME_BYTES, dtype=bool)
    if n >= 2:
        is_sync[: n - 1] = (buf[:-1] == SYNC[0]) & (buf[1:] == SYNC[1])
    is_sync[n - FRAME_BYTES + 1 :] = False  # a sync without a whole frame behind it is not a frame
    last_start = n - FRAME_BYTES
    # A sync is confirmed when another sync follows one frame later, or when it is the last whole frame.
    follows = np.zeros_like(is_sync)
    follows[:-FRAME_BYTES] = is_sync[FRAME_BYTES:]
    confirmed = np.flatnonzero(is_sync & (follows | (np.arange(len(is_sync)) + 2 * FRAME_BYTES > n)))

    offsets: list[int] = []
    sample_index: list[int] = []
    previous_end: int | None = None  # byte offset just after the last good frame
    sample = 0
    k = 0
    while k < len(confirmed):
        start = int(confirmed[k])
        # Bytes skipped before this frame stand for round(skipped / 16) lost samples.
        skipped = start - (previous_end or 0)
        sample += round(skipped / FRAME_BYTES)
        p = start
        while p <= last_start and is_sync[p]:  # the contiguous run of frames from here
            offsets.append(p)
            sample_index.append(sample)
            sample += 1
            p += FRAME_BYTES
        previous_end = p
        k = int(np.searchsorted(confirmed, p))
    return np.asarray(offsets, dtype=np.int64), np.asarray(sample_index, dtype=np.int64)


def _decode_counts(frames: np.ndarray) -> np.ndarray:
    """(n, 16) uint8 frames -> (n, 9) signed counts."""
    low = frames[:, 2:11].astype(np.int32)
    high = np.empty_like(low)
    for pair, byte in enumerate(range(11, 15)):
        high[:, 2 * pair] = frames[:, byte] >> 4
        high[:, 2 * pair + 1] = frames[:, byte] & 0x0F
    high[:, 8] = frames[:, 15] >> 4
    return low + 256 * high - ZERO


def _with_derived_leads(channels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nine device channels (I, II, III, V1..V6) -> the standard twelve leads, in counts: the augmented limb leads
    are halves, so they are kept doubled, with a doubled gain. Returns (counts, gain multiple of each lead)."""
    lead_i, lead_ii, lead_iii = channels[:, 0], channels[:, 1], channels[:, 2]
    augmented = np.column_stack([-(lead_i + lead_ii), lead_i - lead_iii, lead_ii + lead_iii])  # 2 aVR, 2 aVL, 2 aVF
    counts = np.concatenate([channels[:, 0:3], augmented, channels[:, 3:9]], axis=1)
    return counts, np.array([1, 1, 1, 2, 2, 2, 1, 1, 1, 1, 1, 1], dtype=np.float64)


def read_wellnest(
    data: bytes,
    gain: float | None = None,
    max_bad_fraction: float | None = None,
    min_duration_s: float | None = None,
    source: str | None = None,
) -> Record:
    """Decode a Wellnest blob. ``gain`` is counts per millivolt (default from settings, 1241)."""
    from ecg_shared.settings import get_settings

    settings = get_settings()
    gain = settings.wellnest_gain if gain is None else gain
    max_bad_fraction = settings.wellnest_max_bad_fraction if max_bad_fraction is None else max_bad_fraction
    min_duration_s = settings.min_duration_s if min_duration_s is None else min_duration_s

    if not data:
        raise EcgFormatError("Wellnest blob is empty")
    if len(data) < FRAME_BYTES:
        raise EcgFormatError(f"Wellnest blob of {len(data)} bytes is shorter than one {FRAME_BYTES}-byte frame")
    buf = np.frombuffer(bytes(data), dtype=np.uint8)
    offsets, samples = _frame_offsets(buf)
    if len(offsets) == 0:
        raise EcgFormatError("not a Wellnest blob: no frame starting with the sync bytes BA 88")

    tail_bytes = len(buf) - int(offsets[-1]) - FRAME_BYTES
    missing_at_end = round(tail_bytes / FRAME_BYTES)
    n_good = len(offsets)
    n_samples = int(samples[-1]) + 1
    dropped = n_samples - n_good
    bad_fraction = (dropped + missing_at_end) / (n_samples + missing_at_end)
    if bad_fraction > max_bad_fraction:
        raise EcgFormatError(
            f"Wellnest blob is corrupt: {dropped + missing_at_end} of {n_samples + missing_at_end} frames bad "
            f"({bad_fraction:.1%}, limit {max_bad_fraction:.0%})"
        )
    duration = n_samples / SAMPLING_RATE
    if duration < min_duration_s:
        raise EcgFormatError(f"Wellnest recording is too short: {duration:.2f} s, minimum {min_duration_s:g} s")

    if n_good * FRAME_BYTES == len(buf):  # a clean blob: every frame in place
        frames = buf.reshape(-1, FRAME_BYTES)
    else:
        frames = buf[offsets[:, None] + np.arange(FRAME_BYTES)]
    counts = _decode_counts(frames)
    if dropped:
        full_axis = np.arange(n_samples)
        counts = np.column_stack([np.interp(full_axis, samples, counts[:, c]) for c in range(counts.shape[1])])
    lead_counts, multiples = _with_derived_leads(counts)
    counts_per_mv = gain * multiples
    signal = counts_to_mv(lead_counts, counts_per_mv)
    metadata = {
        "format": "wellnest",
        "device": "Wellnest 12-lead",
        "gain_counts_per_mv": gain,
        "dropped_frames": int(dropped),
        "trailing_bytes_ignored": int(tail_bytes),
    }
    repairs = []
    if dropped:
        repairs.append(
            f"{dropped} corrupt or missing frame{'s' if dropped != 1 else ''} ({dropped * 1000 / SAMPLING_RATE:g} ms) "
            "filled in by linear interpolation"
        )
    if tail_bytes:
        repairs.append(f"{tail_bytes} trailing byte{'s' if tail_bytes != 1 else ''} that make no whole frame ignored")
    if repairs:
        metadata["repairs"] = repairs
    if source:
        metadata["source"] = source
    # Interpolated counts are not whole, so a repaired recording is stored as float32 millivolts.
    whole = None if dropped else tuple(counts_per_mv.tolist())
    return Record(signal, SAMPLING_RATE, list(STANDARD_12_LEADS), metadata, counts_per_mv=whole)


def write_wellnest(record: Record, gain: float | None = None) -> bytes:
    """Encode a 12-lead record as a Wellnest blob (resampled to 500 Hz; III derived from I and II if absent)."""
    from ecg_shared.preprocessing import resample
    from ecg_shared.settings import get_settings

    gain = get_settings().wellnest_gain if gain is None else gain
    names = record.lead_names
    try:
        lead_i, lead_ii = record.lead("I"), record.lead("II")
        lead_iii = record.lead("III") if "III" in names else lead_ii - lead_i
        channels = np.column_stack([lead_i, lead_ii, lead_iii] + [record.lead(f"V{k}") for k in range(1, 7)])
    except KeyError as exc:
        raise EcgFormatError(f"a Wellnest blob needs leads I, II and V1-V6: {exc.args[0]}") from None
    if not np.all(np.isfinite(channels)):
        raise EcgFormatError("cannot encode a signal containing NaN or infinity")
    channels = resample(channels, record.sampling_rate, SAMPLING_RATE)
    counts = np.clip(np.rint(channels * gain) + ZERO, 0, 4095).astype(np.uint16)
    frames = np.zeros((len(counts), FRAME_BYTES), dtype=np.uint8)
    frames[:, 0], frames[:, 1] = SYNC
    frames[:, 2:11] = counts & 0xFF
    high = (counts >> 8).astype(np.uint8)
    for pair, byte in enumerate(range(11, 15)):
        frames[:, byte] = (high[:, 2 * pair] << 4) | high[:, 2 * pair + 1]
    frames[:, 15] = high[:, 8] << 4
    return frames.tobytes()

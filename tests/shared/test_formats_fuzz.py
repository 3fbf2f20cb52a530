"""Property-based: no input makes a reader raise anything but EcgFormatError."""

from __future__ import annotations

import io
import zipfile

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecg_shared.formats import FORMATS, EcgFormatError, Record, read_ecg, write_wellnest
from ecg_shared.formats.wellnest import FRAME_BYTES

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _read_or_documented_error(data: bytes, **kwargs) -> Record | None:
    try:
        record = read_ecg(data, **kwargs)
    except EcgFormatError as exc:
        assert str(exc)  # the message names the problem
        return None
    assert isinstance(record, Record)
    assert record.signal.ndim == 2 and record.signal.dtype == np.float32
    return record


@FUZZ
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_detected(data):
    _read_or_documented_error(data)


@FUZZ
@given(st.binary(max_size=2048), st.sampled_from(FORMATS), st.one_of(st.none(), st.floats(allow_nan=True)))
def test_arbitrary_bytes_with_forced_format(data, fmt, fs):
    _read_or_documented_error(data, format=fmt, fs=fs)


def _blob() -> bytes:
    rng = np.random.default_rng(1)
    signal = rng.normal(scale=0.5, size=(1500, 12))
    from ecg_shared.formats import STANDARD_12_LEADS

    return write_wellnest(Record(signal, 500, list(STANDARD_12_LEADS), {}))


BLOB = _blob()


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(BLOB) - 1), st.integers(0, 255)), max_size=40), st.integers(0, len(BLOB)))
def test_corrupted_wellnest_blobs(edits, cut):
    data = bytearray(BLOB[:cut] if cut > FRAME_BYTES else BLOB)
    for position, value in edits:
        if position < len(data):
            data[position] = value
    record = _read_or_documented_error(bytes(data), format="wellnest")
    if record is not None:
        assert record.n_samples <= len(BLOB) // FRAME_BYTES + 1
        assert np.all(np.isfinite(record.signal))


@FUZZ
@given(
    st.dictionaries(
        st.builds(
            str.__add__,
            st.text(alphabet="abcdefgh_/0123", min_size=1, max_size=8),
            st.sampled_from([".hea", ".dat", ".mat", ".npy", ".txt", ""]),
        ),
        st.binary(max_size=300),
        max_size=4,
    )
)
def test_arbitrary_zip_archives(members):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    _read_or_documented_error(buffer.getvalue())


@FUZZ
@given(st.text(alphabet="0123456789,.-#=fsIV \n", max_size=600), st.one_of(st.none(), st.floats(1, 1000)))
def test_csv_like_text(text, fs):
    _read_or_documented_error(text.encode(), format="csv", fs=fs)

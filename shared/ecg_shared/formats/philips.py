"""Philips PageWriter / Sierra ECG XML (``<restingecgdata>``, SierraECG 1.03 and PhilipsECG 1.04.x), in mV.

The rhythm is ``<parsedwaveforms>``: base64 of either XLI-compressed chunks (:mod:`ecg_shared.formats.xli`), one per
channel, or uncompressed little-endian int16 leads one after another. The lead labels come from its ``leadlabels``
attribute (1.04) or, in 1.03, from the acquisition type (standard 12-lead order). The rate is ``samplingrate`` (or
``samplespersecond``), the scale ``resolution`` / ``signalresolution`` in µV per count, the length
``durationperchannel`` in ms; a file may hold more channels (a pace channel) than leads. Carts end the strip with a
calibration pulse (every lead 0, then 1 mV): that tail is cut off and ``metadata["calibration_pulse_removed_s"]`` says
how much.

Philips stores III, aVR, aVL and aVF as residuals from Einthoven's and Goldberger's relations (as sierra-ecg-tools
documents): III = II − I − stored, aVR = −stored − ⌊(I + II)/2⌋, aVL = ⌊(I − III)/2⌋ − stored,
aVF = ⌊(II + III)/2⌋ − stored. The residuals are small, the leads themselves are not, so the reader tells the two apart
on the data (stored III nearer 0 than II − I, sample for sample) and says which it found in
``metadata["limb_leads_stored_as"]``.

Both UTF-8 and UTF-16 (with a byte order mark) files are read; the XML parser takes the encoding from the file. Only
the cart model, software, filters, scale and acquisition date (not the time) are kept: never the patient, order or
acquirer sections.
"""

from __future__ import annotations

from xml.etree.ElementTree import Element

import numpy as np

from ecg_shared.formats.leads import derive_limb_leads, in_standard_order
from ecg_shared.formats.record import STANDARD_12_LEADS, EcgFormatError, Record, normalise_lead_name
from ecg_shared.formats.vendor_xml import (
    child_text,
    decode_base64,
    filter_settings,
    number,
    parse_xml,
    xml_root_name,
)
from ecg_shared.formats.xli import xli_decode

WHAT = "Philips XML"
_RESIDUAL_LIMB_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF")
_MAX_CALIBRATION_S = 1.5
_MAX_DURATION_MS = 3_600_000  # carts record 10-60 s; the bound keeps a lying header from sizing a decompression bomb
_STANDARD_ACQUISITIONS = {"STD-12", "10-WIRE", "STD 12", "12-LEAD"}


def looks_like_philips(head: bytes) -> bool:
    return xml_root_name(head) == "restingecgdata"


def _lead_labels(waveforms: Element, signal: Element | None) -> list[str]:
    labels = (waveforms.get("leadlabels") or "").split()
    if labels:
        count = waveforms.get("numberofleads")
        return labels[: int(number(count, f"{WHAT} numberofleads"))] if count else labels
    acquisition = (child_text(signal, "acquisitiontype") or child_text(signal, "leadset") or "").upper()
    channels = int(number(child_text(signal, "numberchannelsvalid") or "12", f"{WHAT} numberchannelsvalid"))
    if acquisition in _STANDARD_ACQUISITIONS and channels == 12:
        return list(STANDARD_12_LEADS)
    raise EcgFormatError(
        f"{WHAT}: no lead labels and acquisition type {acquisition or 'missing'!r} names no lead order"
    )


def _channels(waveforms: Element, n_leads: int, n_samples: int) -> list[np.ndarray]:
    data = decode_base64(waveforms.text, WHAT)
    method = waveforms.get("compression") or waveforms.get("compressmethod") or "Uncompressed"
    if waveforms.get("compressflag", "True").lower() == "false":
        method = "Uncompressed"
    if method.upper() == "XLI":
        channels = xli_decode(data, max_samples=n_samples, max_chunks=n_leads)
    elif method.lower() in ("uncompressed", "none"):
        if len(data) < 2 * n_leads * n_samples:
            raise EcgFormatError(
                f"{WHAT}: {len(data)} bytes of uncompressed data, {2 * n_leads * n_samples} expected "
                f"({n_leads} leads × {n_samples} samples)"
            )
        counts = np.frombuffer(data[: 2 * n_leads * n_samples], dtype="<i2")
        channels = list(counts.reshape(n_leads, n_samples))
    else:
        raise EcgFormatError(f"{WHAT}: unsupported waveform compression {method!r} (XLI and uncompressed are read)")
    if len(channels) < n_leads:
        raise EcgFormatError(f"{WHAT}: {len(channels)} channels of data for {n_leads} leads")
    short = [index for index, channel in enumerate(channels[:n_leads]) if channel.size < n_samples]
    if short:
        raise EcgFormatError(f"{WHAT}: lead {short[0] + 1} holds fewer than the {n_samples} samples its header says")
    return [channel[:n_samples].astype(np.int32) for channel in channels[:n_leads]]


def _restore_limb_leads(leads: dict[str, np.ndarray]) -> str:
    """Undo Philips' residual coding of III, aVR, aVL and aVF in place, when the data shows it was applied."""
    lead_i, lead_ii, stored_iii = leads["I"], leads["II"], leads["III"]
    einthoven = lead_ii - lead_i
    # Residuals sit near 0, a recorded III near II - I: whichever the stored lead is closer to, sample for sample
    # (medians, so the calibration pulse at the end, where residual coding gives large values, does not decide).
    if np.median(np.abs(stored_iii)) >= np.median(np.abs(stored_iii - einthoven)):
        return "leads"
    lead_iii = einthoven - stored_iii
    leads["III"] = lead_iii
    leads["aVR"] = -leads["aVR"] - (lead_i + lead_ii) // 2
    leads["aVL"] = (lead_i - lead_iii) // 2 - leads["aVL"]
    leads["aVF"] = (lead_ii + lead_iii) // 2 - leads["aVF"]
    return "residuals"


def _calibration_samples(counts: np.ndarray, rate: float) -> int:
    """How many trailing samples are the cart's calibration pulse (every lead the same value: 0, then 1 mV).

    No real ECG has all its leads equal (I = II would make III zero), so such a tail is never signal.
    """
    equal = np.all(counts == counts[:, :1], axis=1)
    tail = int(np.argmin(equal[::-1])) if not equal.all() else counts.shape[0]
    return tail if 0 < tail <= _MAX_CALIBRATION_S * rate and tail < counts.shape[0] else 0


def _metadata(root: Element, signal: Element | None, waveforms: Element) -> dict:
    acquisition = root.find("dataacquisition")
    machine = acquisition.find("machine") if acquisition is not None else None
    bandwidth = (child_text(signal, "signalbandwidth") or "").split("-")  # SierraECG 1.03: "0.05-150"
    metadata = {
        "format": "philips_xml",
        "units": "mV",
        "document": " ".join(
            filter(
                None, [child_text(root, "documentinfo/documenttype"), child_text(root, "documentinfo/documentversion")]
            )
        ),
        "manufacturer": "Philips",
        "model": (machine.text or "").strip() or None if machine is not None else None,
        "software": machine.get("detaildescription") or None if machine is not None else None,
        "recorded_at": acquisition.get("date") if acquisition is not None else None,
        "filters": filter_settings(
            waveforms.get("hipass") or child_text(signal, "hipass") or bandwidth[0],
            waveforms.get("lowpass") or child_text(signal, "lowpass") or bandwidth[-1],
            child_text(signal, "acsetting") or child_text(root, "reportinfo/reportbandwidth/notchfiltersetting"),
        ),
        "signal_bandwidth": child_text(signal, "signalbandwidth"),
        "acquisition_type": child_text(signal, "acquisitiontype"),
    }
    return {key: value for key, value in metadata.items() if value}


def read_philips(data: bytes, source: str | None = None) -> Record:
    root = parse_xml(data, WHAT)
    if root.tag != "restingecgdata":
        raise EcgFormatError(f"{WHAT}: the root element is <{root.tag}>, not <restingecgdata>")
    waveforms = root.find("waveforms/parsedwaveforms")
    if waveforms is None:
        raise EcgFormatError(f"{WHAT}: no <parsedwaveforms> (the rhythm data)")
    signal = root.find("dataacquisition/signalcharacteristics")
    rate = number(waveforms.get("samplespersecond") or child_text(signal, "samplingrate"), f"{WHAT} sampling rate")
    resolution = number(
        waveforms.get("resolution") or child_text(signal, "resolution") or child_text(signal, "signalresolution"),
        f"{WHAT} resolution (µV per count)",
    )
    duration_ms = number(waveforms.get("durationperchannel"), f"{WHAT} durationperchannel")
    n_samples = round(duration_ms * rate / 1000.0)
    if rate <= 0 or n_samples <= 0:
        raise EcgFormatError(f"{WHAT}: {rate} Hz over {duration_ms} ms is no recording")
    if duration_ms > _MAX_DURATION_MS:
        raise EcgFormatError(f"{WHAT}: durationperchannel {duration_ms:g} ms is over an hour, not a cart's recording")
    labels = [normalise_lead_name(label) for label in _lead_labels(waveforms, signal)]
    channels = _channels(waveforms, len(labels), n_samples)
    if waveforms.get("signalsigned", "True").lower() == "false":
        channels = [channel.astype(np.uint16).astype(np.int32) for channel in channels]
    offset = int(number(waveforms.get("signaloffset") or child_text(signal, "signaloffset") or "0", f"{WHAT} offset"))
    leads = {label: channel - offset for label, channel in zip(labels, channels, strict=True)}
    metadata = _metadata(root, signal, waveforms)
    if all(lead in leads for lead in _RESIDUAL_LIMB_LEADS):
        metadata["limb_leads_stored_as"] = _restore_limb_leads(leads)
    if source:
        metadata["source"] = source
    counts = np.column_stack([leads[label] for label in labels])
    calibration = _calibration_samples(counts, rate) if counts.shape[1] > 1 else 0
    if calibration:
        counts = counts[:-calibration]
        metadata["calibration_pulse_removed_s"] = round(calibration / rate, 3)
    signal_mv = counts.astype(np.float64) * resolution / 1000.0
    return in_standard_order(derive_limb_leads(Record(signal_mv, rate, labels, metadata)))

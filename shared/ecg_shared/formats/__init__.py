"""ECG record formats: one entry point, :func:`read_ecg`, and one error type, :class:`EcgFormatError`.

>>> record = read_ecg("A00001.hea")          # WFDB, detected from the extension
>>> record = read_ecg(blob_bytes)              # Wellnest raw, detected from the frame sync bytes
>>> record = read_ecg(f, format="csv", fs=500)
>>> record = read_ecg(muse_xml_bytes)          # GE MUSE, Philips, HL7 aECG, DICOM, SCP-ECG, EDF, ISHNE: by content
"""

from ecg_shared.formats.detect import FORMATS, detect_format, read_ecg
from ecg_shared.formats.record import STANDARD_12_LEADS, EcgFormatError, Record, normalise_lead_name
from ecg_shared.formats.wellnest import read_wellnest, write_wellnest
from ecg_shared.formats.wfdb_format import read_wfdb_files, zip_wfdb_record

__all__ = [
    "FORMATS",
    "STANDARD_12_LEADS",
    "EcgFormatError",
    "Record",
    "detect_format",
    "normalise_lead_name",
    "read_ecg",
    "read_wellnest",
    "read_wfdb_files",
    "write_wellnest",
    "zip_wfdb_record",
]

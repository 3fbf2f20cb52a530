"""What the XML readers (GE MUSE, Philips, HL7 aECG) share: safe parsing, root detection and base64.

Parsing goes through defusedxml: a document that declares entities (the "billion laughs" expansion bomb, or an
external entity that would read a local file or a URL) is refused with an :class:`EcgFormatError` naming the problem,
before anything is expanded or fetched. A document type declaration without entities (MUSE files carry
``<!DOCTYPE RestingECG SYSTEM "restecg.dtd">``) is allowed; the external DTD is never loaded.
"""

from __future__ import annotations

import base64
import binascii
import re
from xml.etree.ElementTree import Element, ParseError

import defusedxml
import defusedxml.ElementTree

from ecg_shared.formats.record import EcgFormatError

_HEAD_BYTES = 65536  # room for the comments and DOCTYPE some exports put before the root element
_MARKUP_BEFORE_ROOT = re.compile(r"<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^>\[]*(\[.*?\])?\s*>", re.DOTALL)
_ROOT_TAG = re.compile(r"<([A-Za-z_][\w.\-]*:)?([A-Za-z_][\w.\-]*)")


def _decode_head(head: bytes) -> str | None:
    head = head[:_HEAD_BYTES]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return head.decode("utf-16", errors="ignore")
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    if head[:2] in (b"<\x00", b"\x00<"):  # UTF-16 without a byte order mark
        return head.decode("utf-16-le" if head[0] == 0x3C else "utf-16-be", errors="ignore")
    text = head.decode("latin-1")
    return text if text.lstrip().startswith("<") else None


def xml_root_name(head: bytes) -> str | None:
    """The local name of the root element of an XML document, from its first bytes (``None`` if not XML)."""
    text = _decode_head(head)
    if text is None:
        return None
    text = _MARKUP_BEFORE_ROOT.sub("", text.lstrip())
    match = _ROOT_TAG.match(text.lstrip())
    return match.group(2) if match else None


def _local_name(tag: str) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else tag


def parse_xml(data: bytes, what: str) -> Element:
    """Parse ``data`` safely and strip the namespaces from every tag (``{urn:hl7-org:v3}series`` -> ``series``)."""
    try:
        root = defusedxml.ElementTree.fromstring(data, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except defusedxml.EntitiesForbidden as exc:
        if exc.sysid or exc.pubid:
            raise EcgFormatError(
                f"{what}: the document declares an external entity ({exc.name!r} -> {exc.sysid or exc.pubid!r}); "
                "external entities are refused"
            ) from None
        raise EcgFormatError(
            f"{what}: the document declares an entity ({exc.name!r}); entity declarations are refused "
            "(they allow entity-expansion attacks such as 'billion laughs')"
        ) from None
    except defusedxml.DefusedXmlException as exc:
        raise EcgFormatError(f"{what}: unsafe XML refused: {exc}") from None
    except ParseError as exc:
        raise EcgFormatError(f"{what}: the XML is malformed or truncated ({exc})") from None
    for element in root.iter():
        element.tag = _local_name(element.tag)
    return root


def decode_base64(text: str | None, what: str) -> bytes:
    """Strict base64 (line breaks and spaces allowed, any other character refused)."""
    compact = "".join((text or "").split())
    if not compact:
        raise EcgFormatError(f"{what}: no waveform data")
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EcgFormatError(f"{what}: the waveform data is not valid base64 ({exc})") from None


def child_text(element: Element | None, path: str) -> str | None:
    """The stripped text of ``element.find(path)``, or ``None`` when absent or empty."""
    if element is None:
        return None
    found = element.find(path)
    text = (found.text or "").strip() if found is not None else ""
    return text or None


def number(text: str | None, what: str) -> float:
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise EcgFormatError(f"{what} is missing or not a number ({text!r})") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise EcgFormatError(f"{what} is not a finite number ({text!r})")
    return value


def filter_settings(highpass: str | None, lowpass: str | None, notch: str | None) -> dict[str, float]:
    """The readers' common ``metadata["filters"]``: cut-offs in Hz, leaving out absent or non-numeric ones."""
    settings = {}
    for key, text in (("highpass_hz", highpass), ("lowpass_hz", lowpass), ("notch_hz", notch)):
        try:
            settings[key] = float(text)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
    return settings

"""The printable ECG report: one landscape page (A4 or Letter: ECG_REPORT_PAPER) laid out as an ECG cart prints it,
as PDF.

Drawn with matplotlib's PDF backend on a figure the size of the page, in axes whose data units are millimetres, so
the page is at true physical scale: 25 mm/s, 10 mm/mV on a 1 mm / 5 mm grid, each row opening with the 1 mV,
200 ms calibration pulse.

- A recording with the 12 standard leads: the 3 x 4 layout (I, II, III | aVR, aVL, aVF | V1-V3 | V4-V6, 2.5 s each,
  the columns consecutive in time) and a 10 s lead II rhythm strip beneath.
- Any other recording (a single lead, a few leads): a strip layout, 10 s rows, one lead after another, up to
  STRIP_ROWS rows.
- Above the grid: the verdict and each model's call with the measurements that moved it most (the answer's
  explanation), heart rate and intervals (``ecg_shared.intervals``), quality remarks and how the verdict was reached,
  the date and time of the analysis; never over the grid: what does not fit ends in a line naming the API answer.
  Below it: speed, gain, filter, what part of the recording is shown,
  the model versions.

No patient identifiers are printed unless the request supplies them (:class:`Patient`): not the file name, not the
record's name, date or header fields. The signal is display-filtered as the page draws it (``plotting``).
"""

from __future__ import annotations

import io
import math
import textwrap
import threading
import warnings
from dataclasses import dataclass
from datetime import datetime

import matplotlib
import numpy as np
from matplotlib.backends.backend_pdf import FigureCanvasPdf
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ecg_gateway.plotting import display_band, display_signal
from ecg_shared.formats import Record
from ecg_shared.formats.record import STANDARD_12_LEADS
from ecg_shared.intervals import Interval, Intervals, measure_intervals
from ecg_shared.schemas import ClassifyResponse, ModelExplanation, ModelResult
from ecg_shared.settings import get_settings
from ecg_shared.vocabulary import EVIDENCE_MIN_IMPORTANCE

SPEED_MM_PER_S = 25.0
GAIN_MM_PER_MV = 10.0
CALIBRATION_MV = 1.0
CALIBRATION_S = 0.2
PAPERS_MM = {"a4": (297.0, 210.0), "letter": (279.4, 215.9)}  # landscape: width, height
GRID_BOTTOM_MM, GRID_HEIGHT_MM = 10.0, 150.0  # 30 large squares high
PULSE_OFFSET_MM = 3.0  # from the grid's left edge to the calibration pulse's leading baseline
TRACE_OFFSET_MM = 15.0  # from the grid's left edge to the first sample
ROW_MM = 37.5  # height of a row (at most; more rows share the grid)
BASELINE_FRACTION = 0.43  # of the row's height, from its bottom
RHYTHM_S = 10.0
STRIP_ROWS = 6
TWELVE_LEAD_COLUMNS = (("I", "II", "III"), ("aVR", "aVL", "aVF"), ("V1", "V2", "V3"), ("V4", "V5", "V6"))
RHYTHM_LEAD = "II"
MAX_PATIENT_FIELD = 100

MINOR_COLOUR, MAJOR_COLOUR = "#f5c4c4", "#e57f7f"
MINOR_WIDTH_PT, MAJOR_WIDTH_PT, TRACE_WIDTH_PT = 0.3, 0.75, 0.8
CALL_WORDS = {"normal": "NORMAL", "abnormal": "ABNORMAL", "unreadable": "UNREADABLE"}
# Class labels as the models were trained (CinC 2017's codes; PTB-XL's words), in words for the reader.
CLASS_NAMES = {
    "N": "normal sinus rhythm",
    "A": "atrial fibrillation",
    "O": "other rhythm",
    "~": "too noisy to classify",
}
DISCLAIMER = "Computer analysis: to be confirmed by a physician."
REPORT_MEASUREMENTS = 2  # per model, the measurements that moved its probability most (the page lists up to 8)

RC = {"pdf.fonttype": 42, "font.family": "DejaVu Sans"}  # TrueType fonts: the text stays text, to search and copy
_render_lock = threading.Lock()  # matplotlib is not thread-safe; reports are rendered one at a time


@dataclass(frozen=True)
class Page:
    """The paper and the grid on it (``grid``: left, bottom, width, height), in millimetres."""

    width: float
    height: float
    grid: tuple[float, float, float, float]


def page_for(paper: str) -> Page:
    """The grid centred across the page: 54 large squares wide where the paper leaves 12 mm margins (A4), else 53
    (Letter), which still holds the calibration pulse and 10 s of trace (265 mm)."""
    width, height = PAPERS_MM[paper]
    grid_width = 270.0 if width - 270.0 >= 24.0 else 265.0
    return Page(width, height, ((width - grid_width) / 2, GRID_BOTTOM_MM, grid_width, GRID_HEIGHT_MM))


@dataclass(frozen=True)
class Patient:
    """Identifiers the request supplied, printed on the page and nowhere else (never stored or logged)."""

    name: str | None = None
    id: str | None = None


@dataclass(frozen=True)
class Row:
    """One row of the grid: ``segments`` are (lead, start s, end s, x offset mm from the trace's start)."""

    segments: tuple[tuple[str, float, float, float], ...]
    timed: bool = False  # label the row with its time span (the strip layout's rows)


def is_twelve_lead(record: Record) -> bool:
    return set(STANDARD_12_LEADS) <= set(record.lead_names)


def layout_rows(record: Record) -> tuple[list[Row], str]:
    """The rows to draw and a line saying which part of the recording they show."""
    duration = record.duration_s
    if is_twelve_lead(record):
        column_s = RHYTHM_S / len(TWELVE_LEAD_COLUMNS)
        rows = [
            Row(
                tuple(
                    (column[row], c * column_s, (c + 1) * column_s, c * column_s * SPEED_MM_PER_S)
                    for c, column in enumerate(TWELVE_LEAD_COLUMNS)
                )
            )
            for row in range(3)
        ]
        rows.append(Row(((RHYTHM_LEAD, 0.0, RHYTHM_S, 0.0),)))
        shown = f"leads 0-{min(duration, RHYTHM_S):.1f} s, 2.5 s per column; rhythm strip lead {RHYTHM_LEAD}"
        shown += _of_duration(min(duration, RHYTHM_S), duration)
        others = [lead for lead in record.lead_names if lead not in STANDARD_12_LEADS]
        return rows, shown + (f"; not shown: {', '.join(others)}" if others else "")
    leads = record.lead_names[:STRIP_ROWS]
    per_lead = max(1, min(math.ceil(duration / RHYTHM_S), STRIP_ROWS // len(leads)))
    rows = [
        Row(((lead, k * RHYTHM_S, (k + 1) * RHYTHM_S, 0.0),), timed=True)
        for lead in leads
        for k in range(per_lead)
        if k * RHYTHM_S < duration
    ]
    shown_s = min(duration, per_lead * RHYTHM_S)
    line = f"strip layout: {', '.join(leads)}, 0-{shown_s:.1f} s in {RHYTHM_S:g} s rows" + _of_duration(
        shown_s, duration
    )
    if len(record.lead_names) > len(leads):
        line += f"; not shown: {', '.join(record.lead_names[len(leads) :])}"
    return rows, line


def _of_duration(shown_s: float, duration_s: float) -> str:
    return f" (of {duration_s:.1f} s recorded)" if duration_s > shown_s + 1e-6 else ""


def render_report(
    record: Record, answer: ClassifyResponse, analysed_at: datetime, patient: Patient | None = None
) -> bytes:
    """The one-page PDF of this recording and its classification, on the paper of ECG_REPORT_PAPER."""
    page = page_for(get_settings().report_paper)
    intervals = measure_intervals(record)
    rows, shown = layout_rows(record)
    # A glyph missing from the font would be warned about by name: a patient's name stays out of the logs.
    with _render_lock, warnings.catch_warnings(), matplotlib.rc_context(RC):
        warnings.simplefilter("ignore")
        figure = Figure(figsize=(page.width / 25.4, page.height / 25.4))
        FigureCanvasPdf(figure)
        axes = figure.add_axes((0.0, 0.0, 1.0, 1.0))
        axes.set_xlim(0.0, page.width)
        axes.set_ylim(0.0, page.height)
        axes.set_axis_off()
        _draw_grid(axes, page)
        _draw_rows(axes, page, record, rows)
        _draw_header(axes, page, record, answer, intervals, analysed_at, patient or Patient())
        _draw_footer(axes, page, record, answer, intervals, shown)
        out = io.BytesIO()
        figure.savefig(out, format="pdf", metadata={"Title": "ECG report", "Creator": "ECG platform gateway"})
    return out.getvalue()


# --- the grid and the traces --------------------------------------------------------------------------------------


def _draw_grid(axes, page: Page) -> None:
    left, bottom, width, height = page.grid
    minor, major = [], []
    for mm in range(int(width) + 1):
        (major if mm % 5 == 0 else minor).append([(left + mm, bottom), (left + mm, bottom + height)])
    for mm in range(int(height) + 1):
        (major if mm % 5 == 0 else minor).append([(left, bottom + mm), (left + width, bottom + mm)])
    axes.add_collection(LineCollection(minor, colors=MINOR_COLOUR, linewidths=MINOR_WIDTH_PT, zorder=1))
    axes.add_collection(LineCollection(major, colors=MAJOR_COLOUR, linewidths=MAJOR_WIDTH_PT, zorder=2))


def _row_height(n_rows: int) -> float:
    return min(ROW_MM, GRID_HEIGHT_MM / max(1, n_rows)) if n_rows > 3 else GRID_HEIGHT_MM / 3


def _draw_rows(axes, page: Page, record: Record, rows: list[Row]) -> None:
    left, bottom, width, height = page.grid
    clip = Rectangle((left, bottom), width, height, transform=axes.transData)
    signal = display_signal(record)
    signal = np.where(np.isfinite(record.signal), signal, np.nan)  # gaps stay gaps
    fs = record.sampling_rate
    row_mm = _row_height(len(rows))
    trace_left = left + TRACE_OFFSET_MM
    for index, row in enumerate(rows):
        baseline = bottom + height - (index + 1) * row_mm + BASELINE_FRACTION * row_mm
        _draw_calibration_pulse(axes, left + PULSE_OFFSET_MM, baseline)
        for number, (lead, start_s, end_s, x_mm) in enumerate(row.segments):
            first, last = round(start_s * fs), min(record.n_samples, round(end_s * fs))
            x0 = trace_left + x_mm
            if number:  # a short mark where the lead changes, as carts print it
                axes.plot([x0, x0], [baseline - 2.5, baseline + 2.5], color="black", lw=TRACE_WIDTH_PT, zorder=3)
            label_y = baseline + min(12.0, (1 - BASELINE_FRACTION) * row_mm - 4.0)  # below the row above
            _write(axes, x0 + 1.0, label_y, lead, fontsize=8, fontweight="bold", ha="left", va="bottom", zorder=4)
            if row.timed:
                span = f"{start_s:g}-{min(end_s, record.duration_s):g} s"
                _write(axes, x0 + 12.0, label_y, span, fontsize=6.5, ha="left", va="bottom", zorder=4)
            if last <= first:
                continue
            column = record.lead_names.index(lead)
            t = np.arange(first, last) / fs - start_s
            line = axes.plot(
                x0 + t * SPEED_MM_PER_S,
                baseline + signal[first:last, column] * GAIN_MM_PER_MV,
                color="black",
                lw=TRACE_WIDTH_PT,
                solid_joinstyle="round",
                zorder=3,
            )[0]
            line.set_clip_path(clip)


def _draw_calibration_pulse(axes, x: float, baseline: float) -> None:
    """The standardisation pulse: 1 mV high (10 mm), 200 ms wide (5 mm), between 2 mm of baseline either side."""
    width = CALIBRATION_S * SPEED_MM_PER_S
    top = baseline + CALIBRATION_MV * GAIN_MM_PER_MV
    xs = [x, x + 2.0, x + 2.0, x + 2.0 + width, x + 2.0 + width, x + 4.0 + width]
    ys = [baseline, baseline, top, top, baseline, baseline]
    axes.plot(xs, ys, color="black", lw=TRACE_WIDTH_PT, solid_joinstyle="miter", zorder=3)


# --- the text -----------------------------------------------------------------------------------------------------


def _write(axes, x: float, y: float, text: str, **style) -> None:
    """Text as given: never parsed as mathtext (a "$" in a name is a dollar sign, not an error)."""
    axes.text(x, y, text, parse_math=False, **style)


class _Column:
    """Lines of text placed downwards from a top edge, wrapped to a width in millimetres, and never below ``bottom``
    (the grid's top edge): lines are added in the order they matter, and where they do not all fit, the last line
    that fits says where the rest is."""

    OVERFLOW = "... more in the API answer (POST /classify)"

    def __init__(self, axes, x: float, top: float, width_mm: float, bottom: float) -> None:
        self.axes, self.x, self.top, self.width_mm, self.bottom = axes, x, top, width_mm, bottom
        self.lines: list[tuple[str, float, bool, float]] = []  # (text, size, bold, gap) of each wrapped part

    def line(self, text: str, size: float = 7.5, bold: bool = False, gap: float = 0.0) -> None:
        chars = max(10, int(self.width_mm / (0.53 * size * 25.4 / 72)))  # DejaVu Sans: about 0.53 em a character
        for number, part in enumerate(textwrap.wrap(text, chars, subsequent_indent="   ") or [""]):
            self.lines.append((part, size, bold, gap if number == 0 else 0.0))

    def draw(self) -> None:
        y, placed = self.top, []
        for part, size, bold, gap in self.lines:
            y -= gap + _line_height(size)
            placed.append((y, part, size, bold))
        if placed and placed[-1][0] < self.bottom:
            placed = [line for line in placed if line[0] >= self.bottom + _line_height(6.5)]
            below = placed[-1][0] if placed else self.top
            placed.append((below - _line_height(6.5), self.OVERFLOW, 6.5, False))
        for y, part, size, bold in placed:
            _write(
                self.axes,
                self.x,
                y,
                part,
                fontsize=size,
                fontweight="bold" if bold else "normal",
                ha="left",
                va="baseline",
            )


def _line_height(size: float) -> float:
    return size * 25.4 / 72 * 1.3


def _measurement_line(model: str, explanation: ModelExplanation) -> str | None:
    """The measurements that moved ``model``'s probability most, in words, or None where it has none to show."""
    strong = [m for m in explanation.measurements if abs(m.importance) >= EVIDENCE_MIN_IMPORTANCE][:REPORT_MEASUREMENTS]
    if not strong:
        return None
    parts = [
        f"{m.description}: {_short(m.value)} (normal {_short(m.reference)}) "
        f"{'+' if m.importance > 0 else '-'}{100 * abs(m.importance):.0f}"
        for m in strong
    ]
    return f"{model}, P({_class_words(explanation.target_class)}): " + "; ".join(parts)


def _short(value: float) -> str:
    """Three significant digits, two below 0.1 (a few microvolts more say nothing on paper)."""
    return f"{value:.3g}" if abs(value) >= 0.1 else f"{value:.2g}"


def _class_words(label: str) -> str:
    return CLASS_NAMES.get(label, label.lower())


def _model_line(model: ModelResult) -> str:
    """``name vN (leads): call[ - predicted class p %]; P(abnormal) p, threshold t``; the class is left out where
    it only repeats the call (a normal/abnormal model)."""
    version = f" v{model.version}" if model.version is not None else ""
    leads = model.leads[0] if len(model.leads) == 1 else f"{len(model.leads)} leads"
    if model.not_judged:  # its probabilities mean nothing: the leads it reads are named under signal quality
        return f"{model.name}{version} ({leads}): not judged - it reads leads that are not readable"
    words = _class_words(model.predicted_class)
    share = 100 * model.probabilities.get(model.predicted_class, 0.0)
    predicted = "" if words == model.call else f" - {words} {share:.0f} %"
    caveat = "; shorter than its window, read with care" if model.caveat else ""  # models[].caveat
    return (
        f"{model.name}{version} ({leads}): {model.call}{predicted}; "
        f"P(abnormal) {model.p_abnormal:.3f}, threshold {model.threshold:.3f}{caveat}"
    )


def _interval_text(interval: Interval) -> str:
    return f"{interval.ms:.0f} ms" if interval.ms is not None else "-"


def _draw_header(
    axes,
    page: Page,
    record: Record,
    answer: ClassifyResponse,
    intervals: Intervals,
    analysed_at: datetime,
    patient: Patient,
) -> None:
    left = page.grid[0]
    right = page.grid[0] + page.grid[2]
    top = page.height - 8.0
    title = "12-lead ECG" if is_twelve_lead(record) else f"ECG, {record.n_leads} lead{'s' * (record.n_leads > 1)}"
    _write(axes, left, top, f"{title} - automated analysis", fontsize=12, fontweight="bold", va="baseline")
    stamp = analysed_at.strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    _write(axes, right, top, f"Analysed {stamp}", fontsize=9, ha="right", va="baseline")

    bottom = page.grid[1] + page.grid[3] + 1.0  # the grid's top edge, and a millimetre of air
    identity = _Column(axes, left, top - 3.0, 68.0, bottom)
    identity.line(f"Patient: {patient.name}" if patient.name else "Patient: not given", size=8.5, bold=True)
    identity.line(f"ID: {patient.id}" if patient.id else "ID: not given", size=8.5)
    rec = answer.recording
    identity.line(
        f"{len(rec.leads)} lead{'s' * (len(rec.leads) > 1)}, {rec.duration_s:.1f} s at {rec.sampling_rate:g} Hz"
        + (f" ({rec.format})" if rec.format else ""),
        gap=1.5,
    )

    identity.draw()

    measures = _Column(axes, left, top - 17.5, 68.0, bottom)
    rate = f"{rec.heart_rate_bpm:.0f} bpm" if rec.heart_rate_bpm is not None else "not detected"
    measures.line(f"Vent. rate   {rate}", size=8, bold=True)
    named = (("PR interval", intervals.pr), ("QRS duration", intervals.qrs), ("QT interval", intervals.qt))
    for name, interval in named[:2]:
        measures.line(f"{name}   {_interval_text(interval)}", size=8)
    qtc = f"   QTc {intervals.qtc_ms:.0f} ms ({intervals.qtc_formula})" if intervals.qtc_ms is not None else ""
    measures.line(f"QT interval   {_interval_text(intervals.qt)}{qtc}", size=8)
    for name, interval in named:
        if interval.ms is None:
            measures.line(f"{name} not measured: {interval.note}", size=6.5)

    measures.draw()

    verdict = answer.verdict
    reading = _Column(axes, left + 72.0, top - 3.0, 110.0, bottom)
    reading.line(
        f"{CALL_WORDS.get(verdict.label, verdict.label.upper())}   "
        + (
            "by rule, no probability"
            if verdict.probability is None
            else f"probability {100 * verdict.probability:.1f} %"
        ),
        size=12,
        bold=True,
    )
    reading.line("Models" + (" (they disagree)" if verdict.disagreement else ""), size=8, bold=True, gap=1.0)
    for model in answer.models:
        reading.line(_model_line(model), size=7)
    if not answer.models:
        reading.line("No model could read this recording's leads.", size=7)
    why = [_measurement_line(e.model, e) for e in answer.explanation or []]
    if any(why):
        reading.line(
            "Why: each model's strongest measurements (value, normal median, points of P)",
            size=7,
            bold=True,
            gap=1.0,
        )
        for text in filter(None, why):
            reading.line(text, size=6.0)
    reading.draw()

    quality = answer.recording.quality
    remarks = list(quality.reasons) + [
        f"Lead {lead}: {issue}" for lead, issues in quality.leads.items() for issue in issues
    ]
    if not quality.usable:
        readable = [lead for lead in quality.leads if lead not in quality.unreadable_leads]
        headline = (
            f"most leads have problems; only models reading {', '.join(readable)} judged"
            if readable
            else "not usable for a reliable reading"
        )
    else:
        headline = "usable, with remarks" if remarks else "good, no problems found"
    notes = _Column(axes, left + 186.5, top - 3.0, right - left - 186.5, bottom)
    notes.line(f"Signal quality: {headline}", size=8, bold=True)
    for remark in remarks[:7]:
        notes.line(f"- {remark}", size=7)
    if len(remarks) > 7:
        notes.line(f"- and {len(remarks) - 7} more remarks (see the API answer)", size=7)
    notes.line(f"Noise score {100 * quality.noise_score:.0f} % (share of power outside the ECG band)", size=7)
    if verdict.rule:
        notes.line("How the verdict was reached", size=7, bold=True, gap=1.0)
        notes.line(verdict.rule, size=6.5)
    notes.draw()


def _draw_footer(axes, page: Page, record: Record, answer: ClassifyResponse, intervals: Intervals, shown: str) -> None:
    highpass, lowpass, notch = display_band(record.sampling_rate)
    band = f"filter {highpass:g}-{lowpass:g} Hz" + (f", {notch:g} Hz notch" if notch else "")
    scale = (
        f"{SPEED_MM_PER_S:g} mm/s   {GAIN_MM_PER_MV:g} mm/mV   grid 1 mm / 5 mm   "
        f"calibration {CALIBRATION_MV:g} mV, {1000 * CALIBRATION_S:g} ms   {band}"
    )
    _write(axes, page.grid[0], 6.0, scale, fontsize=7, va="baseline")
    measured = (
        f"Intervals: lead {intervals.lead}, median over the beats ({intervals.beats} detected), {intervals.method}"
    )
    _write(axes, page.grid[0], 2.5, f"Shown: {shown}.   {measured}", fontsize=6.5, va="baseline")
    versions = ", ".join(f"{m.name} v{m.version}" if m.version is not None else m.name for m in answer.models)
    right = page.grid[0] + page.grid[2]
    _write(axes, right, 6.0, f"Models: {versions or 'none'}", fontsize=7, ha="right", va="baseline")
    _write(axes, right, 2.5, DISCLAIMER, fontsize=6.5, ha="right", va="baseline", style="italic")

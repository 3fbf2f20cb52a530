// Draws ECG traces the way clinicians read them: on ECG paper with a 1 mm / 5 mm grid, at a paper speed in mm/s
// and a gain in mm/mV (standard 25 mm/s and 10 mm/mV), one row per lead with its name and a 1 mV calibration
// pulse; one model's evidence (explanation segments) shaded on the leads that model read, deeper for larger
// effects, nothing below the threshold. Also the overview strip of a whole recording.
"use strict";

const EcgPaper = (() => {
  const MAX_CANVAS_PX = 32000;
  const LABEL_MM = 14;        // left margin: lead name + calibration pulse
  const RIGHT_MM = 10;        // right margin: room for the last time label
  const AXIS_MM = 6;          // bottom margin: seconds
  const MIN_LABEL_PX = 12;    // labels stay readable at any zoom
  const COLORS = {
    paper: "#fffafa", minor: "rgba(232, 120, 120, 0.28)", major: "rgba(214, 60, 60, 0.55)",
    trace: "#111827", label: "#7a1c1c", highlight: "255, 140, 0",
  };

  function percentile(sorted, q) {
    if (!sorted.length) return 0;
    return sorted[Math.min(sorted.length - 1, Math.max(0, Math.round(q * (sorted.length - 1))))];
  }

  // Row height (mm) and baseline offset per lead, from the lead's robust amplitude range.
  function rowsFor(trace, gain) {
    let top = 0;
    return trace.lead_names.map((name) => {
      const values = trace.leads[name].filter((v) => v !== null && Number.isFinite(v));
      const sorted = Float64Array.from(values).sort();
      const low = percentile(sorted, 0.005), high = percentile(sorted, 0.995);
      const spanMm = Math.max(1.5, high - low) * gain;
      const heightMm = Math.min(60, Math.max(20, Math.ceil((spanMm + 8) / 5) * 5));
      const row = { name, top, heightMm, midMv: (high + low) / 2 };
      top += heightMm;
      return row;
    });
  }

  // The shading strength (0 = not drawn) of an importance: a change of probability, thresholds from
  // ecg_shared.vocabulary. Only effects that support the explained class are drawn.
  function strength(importance) {
    const { min_importance: low, full_importance: full } = Vocabulary.evidence;
    return Math.max(0, Math.min(1, (importance - low) / Math.max(1e-9, full - low)));
  }

  function alphaFor(importance) { return 0.12 + 0.43 * strength(importance); }

  // The segments of ``evidence`` ({leads, segments}) that are drawn.
  function drawnSegments(evidence) {
    return evidence ? evidence.segments.filter((s) => s.importance >= Vocabulary.evidence.min_importance) : [];
  }

  function draw(canvas, trace, options = {}) {
    const speed = options.speed || 25;      // mm/s
    const gain = options.gain || 10;        // mm/mV
    const evidence = options.evidence || null;
    const rows = rowsFor(trace, gain);
    const widthMm = LABEL_MM + trace.duration_s * speed + RIGHT_MM;
    const heightMm = rows.reduce((sum, r) => sum + r.heightMm, 0) + AXIS_MM;
    const pxPerMm = Math.min(options.pxPerMm || 4, MAX_CANVAS_PX / widthMm);
    const dpr = window.devicePixelRatio || 1;
    const cssWidth = Math.round(widthMm * pxPerMm), cssHeight = Math.round(heightMm * pxPerMm);
    canvas.style.width = `${cssWidth}px`;
    canvas.style.height = `${cssHeight}px`;
    canvas.width = Math.round(cssWidth * dpr);
    canvas.height = Math.round(cssHeight * dpr);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr * pxPerMm, 0, 0, dpr * pxPerMm, 0, 0);   // draw in millimetres
    ctx.fillStyle = COLORS.paper;
    ctx.fillRect(0, 0, widthMm, heightMm);
    const x = (seconds) => LABEL_MM + seconds * speed;

    // Evidence first, under the grid and the trace, only on the rows of the leads the model read.
    const shaded = drawnSegments(evidence);
    const evidenceRows = evidence ? rows.filter((r) => evidence.leads.includes(r.name)) : [];
    for (const row of evidenceRows) {
      for (const seg of shaded) {
        ctx.fillStyle = `rgba(${COLORS.highlight}, ${alphaFor(seg.importance).toFixed(3)})`;
        const x0 = x(seg.start_s), x1 = x(Math.min(seg.end_s, trace.duration_s));
        ctx.fillRect(x0, row.top, Math.max(0.5, x1 - x0), row.heightMm);
      }
    }

    // Grid: 1 mm minor lines (when they are at least 3 px apart), 5 mm major lines.
    const line = (x0, y0, x1, y1) => { ctx.moveTo(x0, y0); ctx.lineTo(x1, y1); };
    const gridLines = (step, color, width) => {
      ctx.beginPath();
      for (let gx = 0; gx <= widthMm; gx += step) line(gx, 0, gx, heightMm);
      for (let gy = 0; gy <= heightMm; gy += step) line(0, gy, widthMm, gy);
      ctx.strokeStyle = color;
      ctx.lineWidth = width / pxPerMm;
      ctx.stroke();
    };
    if (pxPerMm >= 3) gridLines(1, COLORS.minor, 0.6);
    gridLines(5, COLORS.major, 1);

    // Leads.
    const step = 1 / trace.sampling_rate;
    const labelMm = (mm) => Math.max(mm, MIN_LABEL_PX / pxPerMm);
    ctx.lineJoin = "round";
    for (const row of rows) {
      const baseline = row.top + row.heightMm / 2;
      const y = (mv) => baseline - (mv - row.midMv) * gain;
      // Calibration pulse: 1 mV high, 0.2 s wide, standing on the row's 0 mV line.
      ctx.beginPath();
      const zero = y(0), px0 = 6;
      line(px0 - 2, zero, px0, zero); ctx.lineTo(px0, zero - gain); ctx.lineTo(px0 + 0.2 * speed, zero - gain);
      ctx.lineTo(px0 + 0.2 * speed, zero); ctx.lineTo(px0 + 0.2 * speed + 2, zero);
      ctx.strokeStyle = COLORS.trace;
      ctx.lineWidth = 1.1 / pxPerMm;
      ctx.stroke();
      ctx.fillStyle = COLORS.label;
      ctx.font = `bold ${labelMm(3.2)}px sans-serif`;
      ctx.fillText(row.name, 1, row.top + 1 + labelMm(3.2));

      ctx.beginPath();
      let pen = false;
      const values = trace.leads[row.name];
      for (let i = 0; i < values.length; i++) {
        const v = values[i];
        if (v === null || !Number.isFinite(v)) { pen = false; continue; }
        const px = x(i * step), py = y(v);
        if (pen) ctx.lineTo(px, py); else { ctx.moveTo(px, py); pen = true; }
      }
      ctx.strokeStyle = COLORS.trace;
      ctx.lineWidth = Math.max(1.1, pxPerMm * 0.28) / pxPerMm;
      ctx.stroke();
    }

    // Seconds along the bottom: every second, or every 5 s when the labels would crowd.
    ctx.fillStyle = COLORS.label;
    const fontMm = labelMm(2.6);
    ctx.font = `${fontMm}px sans-serif`;
    const every = speed * pxPerMm >= 40 ? 1 : 5;
    for (let s = 0; s <= trace.duration_s + 1e-9; s += every) {
      ctx.fillText(`${s} s`, x(s) + 0.5, heightMm - 1.5);
    }
    const layout = { pxPerMm, widthMm, heightMm, speed, rows, evidenceRows, shaded, duration: trace.duration_s };
    canvas.dataset.leads = String(rows.length);
    canvas.dataset.durationS = String(trace.duration_s);
    canvas.dataset.pxPerMm = pxPerMm.toFixed(3);
    canvas.dataset.evidenceLeads = evidenceRows.map((r) => r.name).join(",");
    canvas.dataset.evidenceSegments = String(evidenceRows.length ? shaded.length : 0);
    canvas.dataset.rows = JSON.stringify(rows.map((r) => ({ name: r.name, top: r.top * pxPerMm, height: r.heightMm * pxPerMm })));
    return layout;
  }

  // CSS pixels <-> seconds on a drawn strip.
  function secondsAt(layout, xPx) { return (xPx / layout.pxPerMm - LABEL_MM) / layout.speed; }
  function pxAt(layout, seconds) { return (LABEL_MM + seconds * layout.speed) * layout.pxPerMm; }

  // The shaded segment (and its lead) under a point of the strip, or null.
  function evidenceAt(layout, xPx, yPx) {
    const yMm = yPx / layout.pxPerMm;
    const row = layout.evidenceRows.find((r) => yMm >= r.top && yMm < r.top + r.heightMm);
    if (!row) return null;
    const t = secondsAt(layout, xPx);
    const seg = layout.shaded.find((s) => t >= s.start_s && t < s.end_s);
    return seg ? { lead: row.name, segment: seg } : null;
  }

  // The px/mm at which a strip fills ``availablePx`` at ``speed``.
  function fitPxPerMm(durationS, speed, availablePx) {
    return availablePx / (LABEL_MM + durationS * speed + RIGHT_MM);
  }

  // The whole recording, one lead, squeezed into ``canvas``'s width: the evidence as bars under it, the part of
  // the strip in view as a frame. Returns the seconds-per-pixel scale for clicks.
  function drawOverview(canvas, trace, lead, evidence, view) {
    const cssWidth = canvas.parentElement.clientWidth, cssHeight = 56;
    const dpr = window.devicePixelRatio || 1;
    canvas.style.width = `${cssWidth}px`;
    canvas.style.height = `${cssHeight}px`;
    canvas.width = Math.round(cssWidth * dpr);
    canvas.height = Math.round(cssHeight * dpr);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = COLORS.paper;
    ctx.fillRect(0, 0, cssWidth, cssHeight);
    const perSecond = cssWidth / trace.duration_s;
    for (const seg of drawnSegments(evidence)) {
      ctx.fillStyle = `rgba(${COLORS.highlight}, ${Math.min(1, alphaFor(seg.importance) * 1.6).toFixed(3)})`;
      ctx.fillRect(seg.start_s * perSecond, 0, Math.max(2, (seg.end_s - seg.start_s) * perSecond), cssHeight);
    }
    const values = trace.leads[lead];
    const finite = values.filter((v) => v !== null && Number.isFinite(v));
    const sorted = Float64Array.from(finite).sort();
    const low = percentile(sorted, 0.005), high = percentile(sorted, 0.995);
    const scale = (cssHeight - 16) / Math.max(0.5, high - low);
    ctx.beginPath();
    for (let i = 0; i < values.length; i++) {
      if (values[i] === null || !Number.isFinite(values[i])) continue;
      const px = (i / trace.sampling_rate) * perSecond, py = cssHeight - 8 - (values[i] - low) * scale;
      i === 0 ? ctx.moveTo(px, py) : ctx.lineTo(px, py);
    }
    ctx.strokeStyle = COLORS.trace;
    ctx.lineWidth = 0.8;
    ctx.stroke();
    ctx.strokeStyle = "#1f5fae";
    ctx.lineWidth = 2;
    ctx.strokeRect(view.startS * perSecond + 1, 1, Math.max(4, (view.endS - view.startS) * perSecond - 2), cssHeight - 2);
    ctx.fillStyle = COLORS.label;
    ctx.font = "11px sans-serif";
    ctx.fillText(`${lead} · whole recording, ${trace.duration_s.toFixed(0)} s`, 4, 12);
    canvas.dataset.lead = lead;
    canvas.dataset.evidenceMarks = String(drawnSegments(evidence).length);
    return { secondsPerPx: 1 / perSecond };
  }

  return { draw, fitPxPerMm, secondsAt, pxAt, evidenceAt, drawOverview, strength };
})();

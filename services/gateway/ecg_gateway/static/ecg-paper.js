// Draws ECG traces the way clinicians read them: on ECG paper with a 1 mm / 5 mm grid, at a paper speed in mm/s
// and a gain in mm/mV (standard 25 mm/s and 10 mm/mV), one row per lead with its name and a 1 mV calibration
// pulse, and the explanation's important time segments shaded.
"use strict";

const EcgPaper = (() => {
  const MAX_CANVAS_PX = 32000;
  const LABEL_MM = 14;        // left margin: lead name + calibration pulse
  const AXIS_MM = 6;          // bottom margin: seconds
  const COLORS = {
    paper: "#fffafa", minor: "rgba(232, 120, 120, 0.28)", major: "rgba(214, 60, 60, 0.55)",
    trace: "#111827", label: "#7a1c1c", highlight: "255, 166, 0",
  };

  function percentile(sorted, q) {
    if (!sorted.length) return 0;
    return sorted[Math.min(sorted.length - 1, Math.max(0, Math.round(q * (sorted.length - 1))))];
  }

  // Row height (mm) and baseline offset per lead, from the lead's robust amplitude range.
  function rowsFor(trace, gain) {
    return trace.lead_names.map((name) => {
      const values = trace.leads[name].filter((v) => v !== null && Number.isFinite(v));
      const sorted = Float64Array.from(values).sort();
      const low = percentile(sorted, 0.005), high = percentile(sorted, 0.995);
      const spanMm = Math.max(1.5, high - low) * gain;
      const heightMm = Math.min(60, Math.max(20, Math.ceil((spanMm + 8) / 5) * 5));
      return { name, heightMm, midMv: (high + low) / 2 };
    });
  }

  function draw(canvas, trace, options = {}) {
    const speed = options.speed || 25;      // mm/s
    const gain = options.gain || 10;        // mm/mV
    const segments = options.segments || [];
    const rows = rowsFor(trace, gain);
    const widthMm = LABEL_MM + trace.duration_s * speed + 4;
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

    // Important segments first, under the grid and the trace.
    // Only the segments that matter most (at least half the strongest one's importance) are shaded.
    const strongest = Math.max(1e-9, ...segments.map((s) => s.importance));
    for (const seg of segments) {
      if (!(seg.importance >= 0.5 * strongest)) continue;
      const alpha = 0.12 + 0.28 * (seg.importance / strongest);
      ctx.fillStyle = `rgba(${COLORS.highlight}, ${alpha.toFixed(3)})`;
      const x0 = LABEL_MM + seg.start_s * speed, x1 = LABEL_MM + Math.min(seg.end_s, trace.duration_s) * speed;
      ctx.fillRect(x0, 0, Math.max(0.5, x1 - x0), heightMm - AXIS_MM);
    }

    // Grid: 1 mm minor lines (when they are at least 3 px apart), 5 mm major lines.
    const line = (x0, y0, x1, y1) => { ctx.moveTo(x0, y0); ctx.lineTo(x1, y1); };
    const gridLines = (step, color, width) => {
      ctx.beginPath();
      for (let x = 0; x <= widthMm; x += step) line(x, 0, x, heightMm);
      for (let y = 0; y <= heightMm; y += step) line(0, y, widthMm, y);
      ctx.strokeStyle = color;
      ctx.lineWidth = width / pxPerMm;
      ctx.stroke();
    };
    if (pxPerMm >= 3) gridLines(1, COLORS.minor, 0.6);
    gridLines(5, COLORS.major, 1);

    // Leads.
    const step = 1 / trace.sampling_rate;
    let top = 0;
    ctx.lineJoin = "round";
    for (const row of rows) {
      const baseline = top + row.heightMm / 2;
      const y = (mv) => baseline - (mv - row.midMv) * gain;
      // Calibration pulse: 1 mV high, 0.2 s wide, standing on the row's 0 mV line.
      ctx.beginPath();
      const zero = y(0), x = 6;
      line(x - 2, zero, x, zero); ctx.lineTo(x, zero - gain); ctx.lineTo(x + 0.2 * speed, zero - gain);
      ctx.lineTo(x + 0.2 * speed, zero); ctx.lineTo(x + 0.2 * speed + 2, zero);
      ctx.strokeStyle = COLORS.trace;
      ctx.lineWidth = 1.1 / pxPerMm;
      ctx.stroke();
      ctx.fillStyle = COLORS.label;
      ctx.font = `bold ${3.2}px sans-serif`;
      ctx.fillText(row.name, 1, top + 4.2);

      ctx.beginPath();
      let pen = false;
      const values = trace.leads[row.name];
      for (let i = 0; i < values.length; i++) {
        const v = values[i];
        if (v === null || !Number.isFinite(v)) { pen = false; continue; }
        const px = LABEL_MM + i * step * speed, py = y(v);
        if (pen) ctx.lineTo(px, py); else { ctx.moveTo(px, py); pen = true; }
      }
      ctx.strokeStyle = COLORS.trace;
      ctx.lineWidth = Math.max(1.1, pxPerMm * 0.28) / pxPerMm;
      ctx.stroke();
      top += row.heightMm;
    }

    // Seconds along the bottom.
    ctx.fillStyle = COLORS.label;
    ctx.font = `${2.6}px sans-serif`;
    for (let s = 0; s <= trace.duration_s + 1e-9; s += 1) {
      ctx.fillText(`${s} s`, LABEL_MM + s * speed + 0.5, heightMm - 1.5);
    }
    canvas.dataset.leads = String(rows.length);
    canvas.dataset.durationS = String(trace.duration_s);
    canvas.dataset.pxPerMm = pxPerMm.toFixed(3);
    return { pxPerMm, widthMm, heightMm };
  }

  // The px/mm at which a strip fills ``availablePx`` at ``speed`` (for the initial zoom).
  function fitPxPerMm(durationS, speed, availablePx) {
    return availablePx / (LABEL_MM + durationS * speed + 4);
  }

  return { draw, fitPxPerMm };
})();

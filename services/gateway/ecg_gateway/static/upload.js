// The upload page: send a file to POST /classify (with its display trace and explanation), show the verdict, each
// model's result side by side, heart rate, quality in plain words, and the trace on ECG paper.
"use strict";

(() => {
  const dropZone = document.getElementById("drop-zone");
  const fileInput = document.getElementById("file-input");
  const statusLine = document.getElementById("upload-status");
  const errorBox = document.getElementById("upload-error");
  const results = document.getElementById("results");
  const canvas = document.getElementById("ecg-canvas");
  const controls = ["speed", "gain", "zoom", "show-highlights"].map((id) => document.getElementById(id));
  let current = null;   // {result, segments, explanation}

  const CALL_WORDS = { normal: "Normal", abnormal: "Abnormal", unreadable: "Unreadable" };

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
  }

  function clearError() {
    errorBox.hidden = true;
    errorBox.textContent = "";
  }

  async function classify(file) {
    clearError();
    if (!file) return;
    if (file.size === 0) { showError(`"${file.name}" is empty: choose an ECG recording.`); return; }
    const form = new FormData();
    form.append("file", file, file.name);
    const format = document.getElementById("format-hint").value;
    const fs = document.getElementById("fs-hint").value;
    if (format) form.append("format", format);
    if (fs) form.append("fs", fs);
    statusLine.textContent = `Classifying ${file.name}…`;
    dropZone.classList.add("busy");
    const started = performance.now();
    try {
      const result = await api("/classify?trace=true&explain=true", { method: "POST", body: form });
      statusLine.textContent = `${file.name}: answered in ${Math.round(performance.now() - started)} ms`;
      render(result);
    } catch (err) {
      statusLine.textContent = "";
      showError(`Could not classify "${file.name}": ${err.message}`);
    } finally {
      dropZone.classList.remove("busy");
      fileInput.value = "";
    }
  }

  function render(result) {
    renderVerdict(result.verdict);
    renderFacts(result);
    renderModels(result.models);
    renderQuality(result.recording.quality);
    const explanation = pickExplanation(result);
    current = { result, explanation, segments: explanation ? explanation.segments : [] };
    results.hidden = false;
    if (result.trace) {  // start with the strip filling the card (at most 12 px/mm, at least 2)
      const zoom = document.getElementById("zoom");
      const fit = EcgPaper.fitPxPerMm(result.trace.duration_s, Number(document.getElementById("speed").value),
        document.getElementById("trace-scroll").clientWidth - 2);
      zoom.value = String(Math.min(12, Math.max(2, Math.floor(fit * 4) / 4)));
    }
    renderTrace();
  }

  function renderVerdict(verdict) {
    const box = document.getElementById("verdict");
    box.className = `card verdict verdict-${verdict.label}`;
    document.getElementById("verdict-label").textContent = CALL_WORDS[verdict.label] || verdict.label;
    document.getElementById("verdict-probability").textContent =
      `probability ${percent(verdict.probability)}`;
    document.getElementById("verdict-rule").textContent = verdict.rule || "";
  }

  function renderFacts(result) {
    const rec = result.recording;
    const facts = [
      ["Heart rate", rec.heart_rate_bpm ? `${Math.round(rec.heart_rate_bpm)} bpm` : "not detected"],
      ["Duration", `${rec.duration_s.toFixed(1)} s`],
      ["Leads", rec.leads.length === 1 ? rec.leads[0] : `${rec.leads.length} leads`],
      ["Sampling rate", `${Math.round(rec.sampling_rate)} Hz`],
      ["Format", rec.format || "–"],
      ["Inference time", `${Math.round(result.timings.total_ms)} ms`],
    ];
    const box = document.getElementById("facts");
    box.replaceChildren(...facts.map(([name, value]) =>
      el("div", { class: "fact" }, el("span", { class: "value", text: value }), el("span", { class: "name", text: name }))));
  }

  function renderModels(models) {
    const grid = document.getElementById("model-results");
    if (!models.length) {
      grid.replaceChildren(el("p", { class: "empty", text: "No model could read this recording's leads." }));
      return;
    }
    grid.replaceChildren(...models.map((m) => {
      const bars = Object.entries(m.probabilities).sort((a, b) => b[1] - a[1]).flatMap(([cls, p]) => [
        el("span", { text: cls }),
        el("div", { class: `bar${cls === m.predicted_class ? " predicted" : ""}` },
          el("span", { style: `width:${(100 * p).toFixed(1)}%` })),
        el("span", { text: percent(p) }),
      ]);
      return el("div", { class: "card model-card", "data-model": m.name },
        el("h3", {}, `${m.name}`, m.version ? el("span", { class: "muted", text: ` v${m.version}` }) : null),
        el("div", { class: "sub", text: `${m.family} · leads ${m.leads.join(", ")} · ${m.windows} window${m.windows === 1 ? "" : "s"}` }),
        el("span", { class: `call call-${m.call}`, text: CALL_WORDS[m.call] || m.call }),
        el("span", { class: "muted", text: `  P(abnormal) ${percent(m.p_abnormal)} · threshold ${percent(m.threshold, 0)}` }),
        el("div", { class: "bars" }, bars));
    }));
  }

  function renderQuality(quality) {
    const box = document.getElementById("quality");
    const issues = [...quality.reasons];
    for (const [lead, leadIssues] of Object.entries(quality.leads)) {
      for (const issue of leadIssues) issues.push(`Lead ${lead}: ${issue}`);
    }
    const headline = quality.usable
      ? el("p", { class: issues.length ? "" : "ok", text: issues.length ? "Signal quality: usable, with remarks" : "Signal quality: good — no problems found" })
      : el("p", { class: "bad", text: "Signal quality: not usable for a reliable reading" });
    box.replaceChildren(el("h2", { text: "Signal quality" }), headline,
      issues.length ? el("ul", {}, issues.map((text) => el("li", { text }))) : null,
      el("p", { class: "muted", text: `Noise score ${(quality.noise_score * 100).toFixed(0)} % (share of power outside the ECG band)` }));
  }

  function pickExplanation(result) {
    const explanations = result.explanation || [];
    if (!explanations.length) return null;
    const deciding = result.models.find((m) => m.call === result.verdict.label);
    return explanations.find((e) => deciding && e.model === deciding.name) || explanations[0];
  }

  function renderTrace() {
    if (!current) return;
    const trace = current.result.trace;
    const legend = document.getElementById("trace-legend");
    if (!trace) {
      canvas.width = 0;
      legend.textContent = "The gateway could not draw this recording.";
      return;
    }
    const showHighlights = document.getElementById("show-highlights").checked;
    const segments = showHighlights ? current.segments : [];
    const layout = EcgPaper.draw(canvas, trace, {
      speed: Number(document.getElementById("speed").value),
      gain: Number(document.getElementById("gain").value),
      pxPerMm: Number(document.getElementById("zoom").value),
      segments,
    });
    const exp = current.explanation;
    legend.textContent = `${trace.lead_names.length} lead${trace.lead_names.length === 1 ? "" : "s"}, `
      + `${trace.duration_s.toFixed(1)} s · grid 1 mm / 5 mm · ${document.getElementById("speed").value} mm/s · `
      + `${document.getElementById("gain").value} mm/mV · 1 mV calibration pulse at the start of each lead`
      + (exp && segments.length ? ` · shaded: the time segments that most support "${exp.target_class}" (${exp.model})` : "")
      + (!exp && current.result.explanation_note ? ` · ${current.result.explanation_note}` : "")
      + (layout.pxPerMm < Number(document.getElementById("zoom").value) ? " · zoom limited by the strip length" : "");
  }

  dropZone.addEventListener("dragover", (e) => { e.preventDefault(); dropZone.classList.add("dragging"); });
  dropZone.addEventListener("dragleave", () => dropZone.classList.remove("dragging"));
  dropZone.addEventListener("drop", (e) => {
    e.preventDefault();
    dropZone.classList.remove("dragging");
    if (e.dataTransfer.files.length > 1) { showError("Drop one file at a time."); return; }
    classify(e.dataTransfer.files[0]);
  });
  dropZone.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); fileInput.click(); }
  });
  fileInput.addEventListener("change", () => classify(fileInput.files[0]));
  for (const control of controls) control.addEventListener("input", renderTrace);
})();

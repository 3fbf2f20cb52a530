// The upload page: send a file to POST /classify (with its display trace and explanation), show the verdict for
// that file, what each model says and why the verdict follows, heart rate, quality and repairs in plain words, and
// the trace on ECG paper with one model's evidence on the leads it read and an overview of long strips.
"use strict";

(() => {
  const dropZone = document.getElementById("drop-zone");
  const fileInput = document.getElementById("file-input");
  const statusLine = document.getElementById("upload-status");
  const errorBox = document.getElementById("upload-error");
  const results = document.getElementById("results");
  const canvas = document.getElementById("ecg-canvas");
  const scroller = document.getElementById("trace-scroll");
  const overview = document.getElementById("overview");
  const overviewBox = document.getElementById("overview-box");
  const tip = document.getElementById("evidence-tip");
  const evidenceSelect = document.getElementById("evidence-model");
  const controls = ["speed", "gain", "zoom", "evidence-model"].map((id) => document.getElementById(id));
  const READABLE_PX_PER_MM = 4;   // the opening zoom at least: 1 mm grid and labels readable
  let current = null;   // {fileName, result, layout, overviewScale}
  let upload = 0;       // answers to an older upload than the latest are dropped

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
  }

  function clearError() {
    errorBox.hidden = true;
    errorBox.textContent = "";
  }

  // Nothing of the previous recording stays on screen once another file is chosen.
  function clearResult(fileName, message) {
    current = null;
    results.hidden = true;
    overviewBox.hidden = true;
    tip.hidden = true;
    canvas.width = 0;
    canvas.style.width = "0px";
    document.getElementById("verdict").className = "card verdict verdict-empty";
    document.getElementById("verdict-file").textContent = fileName;
    document.getElementById("verdict-label").textContent = "No result";
    document.getElementById("verdict-probability").textContent = message;
    document.getElementById("verdict-rule").textContent = "";
    document.getElementById("verdict-models").replaceChildren();
    clearError();
    Review.clear();
  }

  function failed(fileName, message) {
    statusLine.textContent = "";
    document.getElementById("verdict-probability").textContent = `"${fileName}" could not be classified`;
    showError(message);
  }

  async function classify(file) {
    if (!file) return;
    const mine = ++upload;
    document.dispatchEvent(new CustomEvent("ecg:upload-started"));
    clearResult(file.name, `Classifying ${file.name}…`);
    if (file.size === 0) { failed(file.name, `"${file.name}" is empty: choose an ECG recording.`); return; }
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
      const result = await api(`/classify?trace=true&explain=true${Review.keepParam()}`, { method: "POST", body: form });
      if (mine !== upload) return;
      statusLine.textContent = `${file.name}: answered in ${Math.round(performance.now() - started)} ms`;
      render(file.name, result);
      Review.show(result);
      document.dispatchEvent(new CustomEvent("ecg:classified", { detail: { file, format, fs } }));
    } catch (err) {
      if (mine !== upload) return;
      failed(file.name, `Could not classify "${file.name}": ${err.message}`);
    } finally {
      dropZone.classList.remove("busy");
      fileInput.value = "";
    }
  }

  function leadsText(leads) { return leads.length === 1 ? `lead ${leads[0]}` : `${leads.length} leads`; }

  function render(fileName, result) {
    current = { fileName, result, layout: null, overviewScale: null };
    document.getElementById("verdict-file").textContent = `Result for ${fileName}`;
    document.getElementById("results-file").textContent = `Recording: ${fileName}`;
    renderVerdict(result.verdict, result.models);
    renderFacts(result);
    renderAgreement(result);
    renderModels(result.models);
    renderQuality(result.recording.quality);
    renderEvidenceChoice(result);
    results.hidden = false;
    if (result.trace) {  // open at a readable scale; a strip that fits is widened to fill the card
      const fit = EcgPaper.fitPxPerMm(result.trace.duration_s, Number(document.getElementById("speed").value),
        scroller.clientWidth - 2);
      const zoom = document.getElementById("zoom");
      zoom.value = String(Math.min(12, Math.max(READABLE_PX_PER_MM, Math.floor(fit * 4) / 4)));
    }
    scroller.scrollLeft = 0;
    renderTrace();
  }

  function disagreement(verdict, models) {
    return typeof verdict.disagreement === "boolean" ? verdict.disagreement : new Set(models.map((m) => m.call)).size > 1;
  }

  // The headline carries every model's call, so a disagreement is never hidden behind the verdict.
  function renderVerdict(verdict, models) {
    document.getElementById("verdict").className = `card verdict verdict-${verdict.label}`;
    document.getElementById("verdict-label").textContent = Vocabulary.callName(verdict.label);
    document.getElementById("verdict-probability").textContent = verdict.probability === null
      ? "decided by rule, not by a model: no probability" : `probability ${percent(verdict.probability)}`;
    const calls = models.flatMap((m, i) => [i ? " · " : "", el("span", { class: "nowrap" }, `${m.name} `,
      callBadge(m))]);
    if (models.length > 1 && disagreement(verdict, models)) calls.unshift(el("strong", { text: "The models disagree: " }));
    document.getElementById("verdict-models").replaceChildren(...calls);
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
    document.getElementById("facts").replaceChildren(...facts.map(([name, value]) =>
      el("div", { class: "fact" }, el("span", { class: "value", text: value }), el("span", { class: "name", text: name }))));
  }

  // A model not judged read a lead that is not readable: its probabilities mean nothing, so none is shown.
  const NOT_JUDGED = "Not judged";
  function callBadge(m) {
    return el("span", { class: `call call-${m.call}`, text: m.not_judged ? NOT_JUDGED : Vocabulary.callName(m.call) });
  }

  function modelSays(m) {
    if (m.not_judged) return m.not_judged;
    const side = m.p_abnormal >= m.threshold ? "≥" : "<";
    return `P(abnormal) ${percent(m.p_abnormal)} ${side} threshold ${percent(m.threshold)}; `
      + `most likely ${Vocabulary.classWithCode(m.predicted_class)}`;
  }

  // What an answer must be read with (models[].caveat): e.g. a 10 s strip in a model's 30 s window.
  function caveatLine(m) {
    return m.caveat && !m.not_judged ? el("p", { class: "caveat", text: `Read with care: ${m.caveat}` }) : null;
  }

  function agreementHeading(models, disagree) {
    if (disagree) return "The models disagree";
    const judged = models.filter((m) => !m.not_judged);
    if (!judged.length) return "No model could be judged";
    const call = Vocabulary.callName(judged[0].call).toLowerCase();
    return judged.length < models.length ? `${judged.length} of ${models.length} models judged: ${call}`
      : `The models agree: ${call}`;
  }

  // Which model says what, and why the overall verdict follows (the verdict's own rule, as the API gives it).
  function renderAgreement(result) {
    const box = document.getElementById("agreement");
    const models = result.models, verdict = result.verdict;
    if (models.length < 2) { box.hidden = true; box.replaceChildren(); return; }
    const disagree = disagreement(verdict, models);
    box.hidden = false;
    box.className = `card agreement${disagree ? " disagree" : ""}`;
    box.dataset.disagreement = String(disagree);
    box.replaceChildren(
      el("h3", { text: agreementHeading(models, disagree) }),
      el("ul", {}, models.map((m) => el("li", { "data-model": m.name },
        el("strong", { text: `${m.name}` }), ` (${leadsText(m.leads)}) says `, callBadge(m), ` — ${modelSays(m)}`,
        caveatLine(m)))),
      el("p", { class: "why" }, el("strong", { text: `Overall ${Vocabulary.callName(verdict.label).toLowerCase()}` }),
        `: ${verdict.rule}`));
  }

  function renderModels(models) {
    const grid = document.getElementById("model-results");
    if (!models.length) {
      grid.replaceChildren(el("p", { class: "empty", text: "No model could read this recording's leads." }));
      return;
    }
    grid.replaceChildren(...models.map((m) => {
      const bars = Object.entries(m.probabilities).sort((a, b) => b[1] - a[1]).flatMap(([cls, p]) => [
        el("span", { text: Vocabulary.classWithCode(cls) }),
        el("div", { class: `bar${cls === m.predicted_class ? " predicted" : ""}` },
          el("span", { style: `width:${(100 * p).toFixed(1)}%` })),
        el("span", { class: "number", text: percent(p) }),
      ]);
      return el("div", { class: "card model-card", "data-model": m.name },
        el("h3", {}, `${m.name}`, m.version ? el("span", { class: "muted", text: ` v${m.version}` }) : null),
        el("div", { class: "sub", text: `${m.family} · read ${leadsText(m.leads)}${m.leads.length > 1 ? ` (${m.leads.join(", ")})` : ""} · ${m.windows} window${m.windows === 1 ? "" : "s"}` }),
        callBadge(m),
        el("p", { class: m.not_judged ? "says not-judged" : "muted says", text: modelSays(m) }),
        caveatLine(m),
        m.not_judged ? null : el("div", { class: "bars" }, bars));
    }));
  }

  function renderQuality(quality) {
    const remarks = [...quality.reasons];
    for (const [lead, leadIssues] of Object.entries(quality.leads)) {
      for (const issue of leadIssues) remarks.push(`Lead ${lead}: ${issue}`);
    }
    const repairs = quality.repairs || [];
    const readable = Object.keys(quality.leads).filter((lead) => !(quality.unreadable_leads || []).includes(lead));
    const headline = !quality.usable
      ? el("p", { class: "bad", text: readable.length
        ? `Signal quality: most leads have problems; only models reading the clean leads (${readable.join(", ")}) `
          + "were judged"
        : "Signal quality: not usable for a reliable reading" })
      : remarks.length || repairs.length
        ? el("p", { text: "Signal quality: usable, with remarks" })
        : el("p", { class: "ok", text: "Signal quality: good — no problems found" });
    const parts = [
      el("h2", { text: "Signal quality" }), headline,
      remarks.length ? el("ul", { class: "remarks" }, remarks.map((text) => el("li", { text }))) : null,
      repairs.length ? el("div", { class: "repairs" }, el("p", { text: "Repaired while reading the file:" }),
        el("ul", {}, repairs.map((text) => el("li", { text })))) : null,
      el("p", { class: "muted", text: `Noise score ${(quality.noise_score * 100).toFixed(0)}\u00a0% (share of power outside the ECG band)` }),
    ];
    document.getElementById("quality").replaceChildren(...parts.filter(Boolean));
  }

  // One option per explained model; the model behind the verdict first.
  function renderEvidenceChoice(result) {
    const explanations = result.explanation || [];
    const deciding = result.models.find((m) => m.call === result.verdict.label);
    const options = explanations.map((e, i) => {
      const model = result.models.find((m) => m.name === e.model);
      return el("option", { value: String(i) },
        `${e.model}: ${Vocabulary.className(e.target_class)} (${leadsText(model ? model.leads : Object.keys(e.leads))})`);
    });
    evidenceSelect.replaceChildren(...options, el("option", { value: "" }, "none"));
    const first = explanations.findIndex((e) => deciding && e.model === deciding.name);
    evidenceSelect.value = explanations.length ? String(Math.max(0, first)) : "";
  }

  function selectedEvidence() {
    const explanations = current.result.explanation || [];
    const exp = evidenceSelect.value === "" ? null : explanations[Number(evidenceSelect.value)];
    if (!exp) return null;
    const model = current.result.models.find((m) => m.name === exp.model);
    return { explanation: exp, leads: model ? model.leads : Object.keys(exp.leads), segments: exp.segments };
  }

  function points(importance) { return `${(100 * importance).toFixed(1)} points`; }

  function legendText(trace, evidence, layout) {
    const speed = document.getElementById("speed").value, gain = document.getElementById("gain").value;
    let text = `${trace.lead_names.length} lead${trace.lead_names.length === 1 ? "" : "s"}, `
      + `${trace.duration_s.toFixed(1)} s · grid 1 mm / 5 mm · ${speed} mm/s · ${gain} mm/mV · `
      + "1 mV calibration pulse at the start of each lead";
    if (layout.pxPerMm < 3) text += " · zoom in to see the 1 mm grid";
    if (layout.pxPerMm < Number(document.getElementById("zoom").value)) text += " · zoom limited by the strip length";
    if (!evidence) return text;
    const exp = evidence.explanation;
    if (exp.note) return `${text} · evidence (${exp.model}): ${exp.note}`;
    const target = Vocabulary.className(exp.target_class);
    const threshold = points(Vocabulary.evidence.min_importance);
    if (!layout.shaded.length) {
      return `${text} · evidence (${exp.model}): no stretch changes P(${target}) by ${threshold} or more, nothing shaded`;
    }
    const strongest = layout.shaded.reduce((a, b) => (b.importance > a.importance ? b : a));
    return `${text} · shaded on ${leadsText(evidence.leads)} (${exp.model}): where blanking the signal lowers `
      + `P(${target}) by ${threshold} or more, deeper for larger drops; hover for the value · strongest `
      + `${strongest.start_s}–${strongest.end_s} s (${points(strongest.importance)})`;
  }

  // A model fused with measurements: the ones that moved its answer most, each against its value in the normal
  // recordings the model was trained on; for a model answering from measurements alone, its leads as well.
  const MEASUREMENTS_SHOWN = 8;
  function renderMeasurements(evidence) {
    const box = document.getElementById("measurements");
    const exp = evidence && evidence.explanation;
    if (!exp || !exp.measurements || !exp.measurements.length) { box.hidden = true; box.replaceChildren(); return; }
    const target = Vocabulary.className(exp.target_class);
    const low = Vocabulary.evidence.min_importance;
    const shown = exp.measurements.filter((m) => Math.abs(m.importance) >= low).slice(0, MEASUREMENTS_SHOWN);
    const value = (v) => (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(3));
    const effect = (m) => el("td", { class: "num",
      text: `${m.importance > 0 ? "+" : "\u2212"}${(100 * Math.abs(m.importance)).toFixed(1)}` });
    const parts = [
      el("h3", { text: `Measurements behind ${exp.model}'s P(${target})` }),
      el("p", { class: "muted", text: "Each row: the measurement on this recording, its median in the normal "
        + "recordings the model was trained on, and how many points P(" + target + ") falls when that one "
        + "measurement is set to the median, the others unchanged (+: it supports " + target
        + "; \u2212: it argues against)." }),
    ];
    if (!shown.length) {
      parts.push(el("p", { text: `No single measurement moves P(${target}) by ${points(low)} or more.` }));
    } else {
      parts.push(el("table", {}, [
        el("thead", {}, el("tr", {}, [el("th", { text: "measurement" }), el("th", { class: "num", text: "here" }),
          el("th", { class: "num", text: "normal median" }), el("th", { class: "num", text: "points" })])),
        el("tbody", {}, shown.map((m) => el("tr", {}, [el("td", { text: m.description }),
          el("td", { class: "num", text: value(m.value) }), el("td", { class: "num", text: value(m.reference) }),
          effect(m)]))),
      ]));
    }
    if (exp.lead_method === "measurements") {
      const leads = Object.entries(exp.leads).filter(([, v]) => Math.abs(v) >= low)
        .sort((a, b) => Math.abs(b[1]) - Math.abs(a[1]));
      parts.push(el("p", { text: leads.length
        ? "By lead (all of its median beat's measurements set to the normal medians together): " + leads.map(
          ([lead, v]) => `${lead} ${v > 0 ? "+" : "\u2212"}${(100 * Math.abs(v)).toFixed(1)}`).join(", ")
        : `No lead's measurements together move P(${target}) by ${points(low)} or more.` }));
    }
    box.replaceChildren(...parts);
    box.hidden = false;
  }

  function renderTrace() {
    if (!current) return;
    const trace = current.result.trace;
    const legend = document.getElementById("trace-legend");
    tip.hidden = true;
    if (!trace) {
      canvas.width = 0;
      overviewBox.hidden = true;
      legend.textContent = "The gateway could not draw this recording.";
      return;
    }
    const evidence = selectedEvidence();
    current.layout = EcgPaper.draw(canvas, trace, {
      speed: Number(document.getElementById("speed").value),
      gain: Number(document.getElementById("gain").value),
      pxPerMm: Number(document.getElementById("zoom").value),
      evidence,
    });
    current.evidence = evidence;
    renderMeasurements(evidence);
    legend.textContent = legendText(trace, evidence, current.layout);
    if (!current.result.explanation && current.result.explanation_note) {
      legend.textContent += ` · ${current.result.explanation_note}`;
    }
    renderOverview();
  }

  // Long strips: the whole recording above the strip, the evidence marked, the part in view framed.
  function renderOverview() {
    if (!current || !current.layout) return;
    const wide = scroller.scrollWidth > scroller.clientWidth + 1;
    overviewBox.hidden = !wide;
    if (!wide) return;
    const trace = current.result.trace, layout = current.layout, evidence = current.evidence;
    const lead = evidence && evidence.leads.length === 1 ? evidence.leads[0]
      : trace.lead_names.includes("II") ? "II" : trace.lead_names[0];
    const view = {
      startS: Math.max(0, EcgPaper.secondsAt(layout, scroller.scrollLeft)),
      endS: Math.min(trace.duration_s, EcgPaper.secondsAt(layout, scroller.scrollLeft + scroller.clientWidth)),
    };
    current.overviewScale = EcgPaper.drawOverview(overview, trace, lead, evidence, view);
  }

  overview.addEventListener("click", (e) => {
    if (!current || !current.overviewScale) return;
    const seconds = e.offsetX * current.overviewScale.secondsPerPx;
    scroller.scrollLeft = EcgPaper.pxAt(current.layout, seconds) - scroller.clientWidth / 2;
    renderOverview();
  });
  scroller.addEventListener("scroll", () => { tip.hidden = true; renderOverview(); });
  window.addEventListener("resize", renderOverview);

  canvas.addEventListener("mousemove", (e) => {
    const hit = current && current.layout && current.evidence ? EcgPaper.evidenceAt(current.layout, e.offsetX, e.offsetY) : null;
    if (!hit) { tip.hidden = true; return; }
    const exp = current.evidence.explanation, seg = hit.segment;
    tip.textContent = `Lead ${hit.lead}, ${seg.start_s}–${seg.end_s} s: blanking it lowers ${exp.model}'s `
      + `P(${Vocabulary.className(exp.target_class)}) by ${points(seg.importance)}`;
    tip.style.left = `${e.clientX + 12}px`;
    tip.style.top = `${e.clientY + 12}px`;
    tip.hidden = false;
  });
  canvas.addEventListener("mouseleave", () => { tip.hidden = true; });

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

// The registry: every model's versions, metrics and model card (for a person: the card's evaluation as tables and
// a reliability diagram, technical details as nested lists); promoting a version (API key) asks for confirmation
// and shows its test metrics beside the active version's.
"use strict";

(() => {
  const container = document.getElementById("models");
  const errorBox = document.getElementById("models-error");
  const dialog = document.getElementById("promote-dialog");
  let models = [];

  function showError(message) { errorBox.textContent = message; errorBox.hidden = false; }

  // Shown in their own places; the rest of the card goes under "technical details".
  const CARD_SHOWN = new Set(["name", "summary", "intended_use", "limitations", "limits", "metrics", "history",
    "metrics_summary", "evaluation", "data", "classes", "normal_classes", "unreadable_classes", "version"]);

  function label(key) { return key.replaceAll("_", " "); }

  function valueNode(value, depth) {
    if (value === null || value === undefined) return "–";
    if (typeof value === "number") return formatNumber(value);
    if (typeof value !== "object") return String(value);
    if (Array.isArray(value)) {
      if (!value.length) return "none";
      if (value.every((v) => typeof v !== "object" || v === null)) {
        return value.some((v) => String(v).length > 40) ? el("ul", {}, value.map((v) => el("li", { text: String(v) })))
          : value.join(", ");
      }
      return el("ol", {}, value.map((v) => el("li", {}, valueNode(v, depth + 1))));
    }
    if (!Object.keys(value).length) return "none";
    return depth >= 3 ? Object.entries(value).map(([k, v]) => `${label(k)} ${typeof v === "object" ? "…" : v}`).join(", ")
      : kv(value, depth + 1);
  }

  function kv(object, depth = 0, className = "kv") {
    return el("dl", { class: className }, Object.entries(object).map(([key, value]) => [
      el("dt", { text: label(key) }), el("dd", {}, valueNode(value, depth))]));
  }

  function classesLine(v) {
    const names = v.classes.map((c) => Vocabulary.classWithCode(c)).join(", ");
    return names;
  }

  function trainingData(data) {
    if (!data || typeof data !== "object") return null;
    const facts = {};
    if (data.dataset) facts.dataset = data.dataset;
    if (data.split) facts.split = data.split;
    if (data.recordings) facts.recordings = Object.entries(data.recordings).map(([k, n]) => `${k} ${n}`).join(" · ");
    const counts = data.class_counts;
    const parts = [el("h3", { text: "Training data" }), kv(facts)];
    if (counts && typeof counts === "object") {
      const splits = Object.keys(counts);
      const classes = [...new Set(splits.flatMap((s) => Object.keys(counts[s])))];
      parts.push(el("div", { class: "table-scroll" }, el("table", { class: "class-counts" },
        el("thead", {}, el("tr", {}, el("th", { text: "class" }), splits.map((s) => el("th", { text: s })))),
        el("tbody", {}, classes.map((c) => el("tr", {}, el("td", { text: Vocabulary.classWithCode(c) }),
          splits.map((s) => el("td", { text: String(counts[s][c] ?? 0) }))))))));
    }
    return parts;
  }

  function modelCard(v) {
    const card = v.model_card || {};
    if (!Object.keys(card).length) return el("p", { class: "muted", text: "No model card." });
    const evaluation = card.evaluation && typeof card.evaluation === "object" ? card.evaluation : {};
    const main = {};
    if (card.summary) main.summary = card.summary;
    main.classes = classesLine(v);
    const intended = card.intended_use ?? evaluation.intended_use;
    if (intended) main.intended_use = intended;
    const limits = card.limitations ?? card.limits ?? evaluation.limitations ?? evaluation.limits;
    if (limits) main.limitations = limits;
    const rest = Object.fromEntries(Object.entries(card).filter(([k]) => !CARD_SHOWN.has(k)));
    return el("div", { class: "model-card-body" },
      kv(main, 0, "kv card-main"),
      Metrics.evaluation(evaluation),
      trainingData(card.data),
      Object.keys(rest).length ? el("details", { class: "technical" }, el("summary", { text: "Technical details" }), kv(rest)) : null);
  }

  // A table of the candidate's and the active version's test metrics, side by side.
  function comparison(candidate, active) {
    const mine = Metrics.comparable(candidate.metrics), theirs = active ? Metrics.comparable(active.metrics) : new Map();
    const names = [...new Set([...theirs.keys(), ...mine.keys()])];
    if (!names.length) return el("p", { class: "muted", text: "Neither version has test metrics to compare." });
    const cell = (map, name) => el("td", { class: "number", text: map.has(name) ? formatNumber(map.get(name)) : "–" });
    return el("div", { class: "table-scroll" }, el("table", { class: "comparison" },
      el("thead", {}, el("tr", {}, el("th", { text: "test metric" }),
        active ? el("th", { text: `active v${active.version}` }) : null, el("th", { text: `candidate v${candidate.version}` }))),
      el("tbody", {}, names.map((name) => el("tr", {}, el("td", { text: name }), active ? cell(theirs, name) : null, cell(mine, name))))));
  }

  function askToPromote(model, candidate) {
    const active = model.versions.find((v) => v.stage === "active");
    document.getElementById("promote-title").textContent = `Promote ${model.name} v${candidate.version}?`;
    document.getElementById("promote-effect").textContent = active
      ? `v${candidate.version} will answer classification requests instead of v${active.version}, which is archived. `
        + "The inference service picks it up within seconds."
      : `${model.name} has no active version: v${candidate.version} will be the first to answer classification requests.`;
    document.getElementById("promote-comparison").replaceChildren(comparison(candidate, active));
    document.getElementById("promote-confirm").textContent = `Promote v${candidate.version}`;
    dialog.returnValue = "";
    dialog.onclose = () => { if (dialog.returnValue === "confirm") promote(model.name, candidate.version); };
    dialog.showModal();
  }

  function promote(name, version) {  // shows the gate's comparison first; promotes from there (promotion.js)
    errorBox.hidden = true;
    PromotionGate.open(name, version, () => { load(); PromotionGate.showAgreement(); });
  }

  function versionRow(model, v) {
    const metric = v.metrics.primary ? `${v.metrics.primary.name} ${formatNumber(v.metrics.primary.value)}`
      : Object.entries(v.metrics).filter(([, x]) => typeof x === "number").map(([k, x]) => `${k} ${formatNumber(x)}`).join(" · ");
    return el("tr", { "data-version": v.version },
      el("td", { text: `v${v.version}` }),
      el("td", {}, el("span", { class: `badge badge-${v.stage}`, text: v.stage })),
      el("td", { text: v.family }), el("td", { text: v.classes.map((c) => Vocabulary.classWithCode(c)).join(", ") }), el("td", { text: v.leads.length === 12 ? "12 leads" : v.leads.join(", ") }),
      el("td", { text: metric || "–" }), el("td", { text: formatTime(v.created_at) }),
      el("td", {}, v.stage === "active" ? el("span", { class: "muted nowrap", text: "serving" })
        : el("button", { class: "secondary", onclick: () => askToPromote(model, v) }, "Promote")));
  }

  function evaluated(v, part) {
    const evaluation = (v.model_card || {}).evaluation;
    return Boolean(evaluation && typeof evaluation === "object" && evaluation[part]);
  }

  // What the answer rests on: the blend in words, and every measurement with its median in normal recordings (what
  // an explanation on the upload page compares a recording's value with).
  function inputsSection(v) {
    const inputs = v.inputs;
    if (!inputs) return null;
    const parts = [el("h3", { text: "What its answer rests on" }), el("p", { class: "answer-basis", text: `${inputs.answer[0].toUpperCase()}${inputs.answer.slice(1)}.` })];
    if (inputs.measurements.length) {
      const value = (x) => (x === null ? "not stored" : Math.abs(x) >= 100 ? x.toFixed(0)
        : Math.abs(x) >= 10 ? x.toFixed(1) : x.toFixed(3));
      parts.push(el("details", { class: "measurements-read" },
        el("summary", { text: `The ${inputs.measurements.length} measurements it reads, with their median in the `
          + "normal recordings it was trained on" }),
        el("div", { class: "table-scroll" }, el("table", {},
          el("thead", {}, el("tr", {}, el("th", { text: "measurement" }), el("th", { class: "num", text: "normal median" }))),
          el("tbody", {}, inputs.measurements.map((m) => el("tr", { "data-name": m.name },
            el("td", { text: m.description }), el("td", { class: "num", text: value(m.reference) }))))))));
    }
    return parts;
  }

  function versionDetails(v) {
    return el("details", { "data-version": v.version },
      el("summary", { text: `v${v.version}: metrics and model card` }),
      Object.keys(v.metrics).length ? [Metrics.summary(v.metrics),
        // The card's evaluation has these with confidence intervals: shown there, not twice.
        evaluated(v, "confusion_matrix") ? null : Metrics.confusion(v.metrics),
        evaluated(v, "per_class") ? null : Metrics.perClass(v.metrics)] : null,
      inputsSection(v),
      el("h3", { text: "Model card" }), modelCard(v));
  }

  function render() {
    if (!models.length) {
      container.replaceChildren(el("p", { class: "empty", text: "No models registered yet: run `ecg models seed` or train one." }));
      return;
    }
    container.replaceChildren(...models.map((m) => el("section", { class: "card model-section", "data-model": m.name },
      el("h2", {}, m.name, m.active_version ? el("span", { class: "muted", text: ` · active v${m.active_version}` }) : el("span", { class: "muted", text: " · no active version" })),
      el("div", { class: "table-scroll" }, el("table", {},
        el("thead", {}, el("tr", {}, ["version", "stage", "family", "classes", "leads", "metric", "created", ""].map((h) => el("th", { text: h })))),
        el("tbody", {}, m.versions.map((v) => versionRow(m, v))))),
      m.versions.map(versionDetails))));
  }

  async function load() {
    try {
      models = (await api("/api/models")).models;
      render();
    } catch (err) {
      showError(`Could not load the models: ${err.message}`);
    }
  }

  load();
})();

// The registry: every model's versions, metrics and model card; promote a version (API key).
"use strict";

(() => {
  const container = document.getElementById("models");
  const errorBox = document.getElementById("models-error");

  function showError(message) { errorBox.textContent = message; errorBox.hidden = false; }

  const CARD_FIRST = ["name", "summary", "intended_use", "limitations"];
  const CARD_SKIPPED = new Set(["metrics", "history"]);  // shown above as metrics, confusion matrix, per class

  function cardValue(value) {
    if (value === null || value === undefined) return "–";
    if (Array.isArray(value) && value.every((v) => typeof v !== "object" || v === null)) {
      if (!value.length) return "none";
      return value.some((v) => String(v).length > 40)
        ? el("ul", {}, value.map((v) => el("li", { text: String(v) })))
        : value.join(", ");
    }
    if (typeof value === "object") return el("pre", { class: "card-json", text: JSON.stringify(value, null, 2) });
    return String(value);
  }

  function modelCard(card) {
    if (!card || !Object.keys(card).length) return el("p", { class: "muted", text: "No model card." });
    const keys = Object.keys(card).filter((k) => !CARD_SKIPPED.has(k));
    keys.sort((a, b) => (CARD_FIRST.includes(a) ? CARD_FIRST.indexOf(a) : 99) - (CARD_FIRST.includes(b) ? CARD_FIRST.indexOf(b) : 99));
    return el("dl", { class: "kv" }, keys.map((key) => [
      el("dt", { text: key.replaceAll("_", " ") }), el("dd", {}, cardValue(card[key])),
    ]));
  }

  function promote(name, version) {  // shows the gate's comparison first; promotes from there (promotion.js)
    errorBox.hidden = true;
    PromotionGate.open(name, version, () => { load(); PromotionGate.showAgreement(); });
  }

  function versionRow(v) {
    const metric = v.metrics.primary ? `${v.metrics.primary.name} ${formatNumber(v.metrics.primary.value)}`
      : Object.entries(v.metrics).filter(([, x]) => typeof x === "number").map(([k, x]) => `${k} ${formatNumber(x)}`).join(" · ");
    return el("tr", { "data-version": v.version },
      el("td", { text: `v${v.version}` }),
      el("td", {}, el("span", { class: `badge badge-${v.stage}`, text: v.stage })),
      el("td", { text: v.family }), el("td", { text: v.classes.join(", ") }), el("td", { text: v.leads.join(", ") }),
      el("td", { text: metric || "–" }), el("td", { text: formatTime(v.created_at) }),
      el("td", {}, v.stage === "active" ? el("span", { class: "muted", text: "serving" })
        : el("button", { class: "secondary", onclick: () => promote(v.name, v.version) }, "Promote")));
  }

  function versionDetails(v) {
    return el("details", {},
      el("summary", { text: `v${v.version}: metrics and model card` }),
      Object.keys(v.metrics).length ? [Metrics.summary(v.metrics), Metrics.confusion(v.metrics), Metrics.perClass(v.metrics)] : null,
      el("h3", { text: "Model card" }), modelCard(v.model_card));
  }

  function render(models) {
    if (!models.length) {
      container.replaceChildren(el("p", { class: "empty", text: "No models registered yet: run `ecg models seed` or train one." }));
      return;
    }
    container.replaceChildren(...models.map((m) => el("section", { class: "card model-section", "data-model": m.name },
      el("h2", {}, m.name, m.active_version ? el("span", { class: "muted", text: ` · active v${m.active_version}` }) : el("span", { class: "muted", text: " · no active version" })),
      el("table", {},
        el("thead", {}, el("tr", {}, ["version", "stage", "family", "classes", "leads", "metric", "created", ""].map((h) => el("th", { text: h })))),
        el("tbody", {}, m.versions.map(versionRow))),
      m.versions.map(versionDetails))));
  }

  async function load() {
    try {
      render((await api("/api/models")).models);
    } catch (err) {
      showError(`Could not load the models: ${err.message}`);
    }
  }

  load();
})();

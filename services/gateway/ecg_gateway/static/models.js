// The registry: every model's versions, metrics and model card; promote a version (API key).
"use strict";

(() => {
  const container = document.getElementById("models");
  const errorBox = document.getElementById("models-error");

  function showError(message) { errorBox.textContent = message; errorBox.hidden = false; }

  function modelCard(card) {
    if (!card || !Object.keys(card).length) return el("p", { class: "muted", text: "No model card." });
    const rows = Object.entries(card).map(([key, value]) => [
      el("dt", { text: key.replaceAll("_", " ") }),
      el("dd", {}, typeof value === "object" ? el("pre", { class: "card-json", text: JSON.stringify(value, null, 2) }) : String(value)),
    ]);
    return el("dl", { class: "kv" }, rows);
  }

  async function promote(name, version) {
    errorBox.hidden = true;
    try {
      await api(`/api/models/${encodeURIComponent(name)}/versions/${version}/promote`, { method: "POST" });
      await load();
    } catch (err) {
      showError(`Could not promote ${name} v${version}: ${err.message}`);
    }
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

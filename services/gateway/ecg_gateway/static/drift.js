// Drift on the models page: each active version's p_abnormal on live answers against its validation split, with
// the population stability index (GET /api/drift).
"use strict";

(() => {
  const container = document.getElementById("drift");

  function share(value) { return value === null ? "–" : percent(value, 0); }

  function bar(value, kind) {
    const width = value === null ? 0 : Math.round(100 * value);
    return el("span", { class: `drift-bar drift-${kind}`, style: `width: ${width}%` });
  }

  function versionCard(v) {
    const psi = v.psi === null ? "PSI –" : `PSI ${v.psi.toFixed(3)}`;
    const calls = Object.entries(v.calls).map(([call, n]) => `${n} ${call}`).join(", ") || "none";
    return el("div", { class: "card drift-card", "data-model": v.name },
      el("h3", { text: `${v.name} v${v.version}: ${psi} (${v.reading})` }),
      el("p", { class: "muted", text:
        `${v.live_answers} live answers (calls: ${calls}) against ${v.reference_recordings ?? "no"} validation `
        + "recordings. PSI below 0.1: stable; 0.1 to 0.25: a moderate shift; above 0.25: a significant shift." }),
      v.note ? el("p", { class: "drift-note", text: v.note }) : null,
      el("div", { class: "table-scroll" }, el("table", { class: "drift-table" },
        el("thead", {}, el("tr", {}, el("th", { text: "p_abnormal" }), el("th", { text: "validation" }),
          el("th", { text: "live" }))),
        el("tbody", {}, v.buckets.map((b) => el("tr", {},
          el("td", { text: `≤ ${b.upper.toFixed(1)}` }),
          el("td", {}, bar(b.reference, "reference"), ` ${share(b.reference)}`),
          el("td", {}, bar(b.live, "live"), ` ${share(b.live)}`)))))));
  }

  async function load() {
    try {
      const report = await api("/api/drift");
      container.replaceChildren(
        el("h2", { text: "Drift" }),
        el("p", { class: "muted", text: `Source: ${report.source}.` }),
        ...(report.versions.length
          ? report.versions.map(versionCard)
          : [el("p", { class: "muted", text: "No active version." })]));
    } catch (err) {
      container.replaceChildren(el("h2", { text: "Drift" }),
        el("p", { class: "error", text: `Drift unavailable: ${err.message}` }));
    }
  }

  load();
})();

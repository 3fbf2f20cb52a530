// The models page's review side: live agreement of each active model with the clinicians' reviews, and the
// promotion gate (the candidate and the active version scored on the same evaluation data) before a promotion.
"use strict";

const PromotionGate = (() => {
  const dialog = document.getElementById("gate-dialog");
  const figure = (value) => (value === null || value === undefined ? "–" : Number(value).toFixed(3));

  async function showAgreement() {
    const box = document.getElementById("live-agreement");
    try {
      const agreement = await api("/api/reviews/agreement");
      const rows = agreement.models.map((m) => el("tr", { "data-model": m.name },
        el("td", { text: m.name }), el("td", { text: `v${m.version}` }),
        el("td", { class: "agreement-rate", text: m.rate === null ? "not reviewed yet" : percent(m.rate) }),
        el("td", { text: `${m.agreed} of ${m.reviewed}` }), el("td", { text: String(m.disputed) })));
      box.replaceChildren(el("h2", { text: "Live agreement with clinicians" }),
        el("p", { class: "muted", text: agreement.rule }),
        el("div", { class: "table-scroll" },
          el("table", {}, el("thead", {}, el("tr", {}, ["model", "active version", "agreement", "agreed / reviewed", "disputed"]
            .map((h) => el("th", { text: h })))), el("tbody", {}, rows))));
    } catch (err) {
      box.replaceChildren(el("p", { class: "error", text: `Could not load live agreement: ${err.message}` }));
    }
  }

  function scoreRow(label, score) {
    return el("tr", {}, el("th", { text: label }),
      score ? [el("td", { text: score.version === null ? "–" : `v${score.version}` }), el("td", { text: figure(score.auc) }),
        el("td", { text: figure(score.agreement) }), el("td", { text: figure(score.sensitivity) }),
        el("td", { text: figure(score.specificity) })] : el("td", { colspan: 5, text: "–" }));
  }

  function render(name, version, gate, onDone) {
    const promote = async (force) => {
      const error = dialog.querySelector(".error");
      try {
        const query = new URLSearchParams({ evaluation: gate.evaluation, force: String(force) });
        await api(`/api/models/${encodeURIComponent(name)}/versions/${version}/promote?${query}`, { method: "POST" });
        dialog.close();
        onDone();
      } catch (err) {
        error.textContent = `Could not promote ${name} v${version}: ${err.message}`;
        error.hidden = false;
      }
    };
    dialog.replaceChildren(
      el("h2", { text: `Promote ${name} v${version}?` }),
      el("p", { id: "gate-verdict", class: gate.passed ? "gate-passed" : "gate-failed",
        text: `${gate.passed ? "The gate passes" : "The gate refuses"}: ${gate.reason}.` }),
      el("p", { class: "muted", text: `Evaluation data: ${gate.evaluation === "reviewed" ? "the clinician-reviewed recordings" : `dataset "${gate.evaluation}"`}`
        + ` · ${gate.n} recordings both versions can read (${gate.labels.normal || 0} normal, ${gate.labels.abnormal || 0} abnormal)`
        + (gate.metric ? ` · compared: ${gate.metric}` : "") }),
      el("table", { id: "gate-table" },
        el("thead", {}, el("tr", {}, ["", "version", "AUC", "agreement", "sensitivity", "specificity"].map((h) => el("th", { text: h })))),
        el("tbody", {}, scoreRow("candidate", gate.candidate), scoreRow("active", gate.active))),
      el("form", { class: "row", onsubmit: (e) => { e.preventDefault(); open(name, version, onDone, e.target.evaluation.value.trim()); } },
        el("label", {}, "Evaluate on ", el("input", { name: "evaluation", value: gate.evaluation })),
        el("button", { type: "submit", class: "secondary" }, "Compare again")),
      el("div", { class: "error", role: "alert", hidden: true }),
      el("div", { class: "gate-actions" },
        el("button", { class: "secondary", id: "gate-cancel", onclick: () => dialog.close() }, "Cancel"),
        gate.passed
          ? el("button", { id: "gate-promote", onclick: () => promote(false) }, "Promote")
          : el("button", { id: "gate-force", class: "danger", onclick: () => promote(true) }, "Promote anyway (force)")));
  }

  async function open(name, version, onDone, evaluation = "reviewed") {
    dialog.replaceChildren(el("p", { class: "muted", text: `Scoring ${name} v${version} and the active version…` }));
    if (!dialog.open) dialog.showModal();
    try {
      const query = new URLSearchParams({ evaluation });
      render(name, version, await api(`/api/models/${encodeURIComponent(name)}/versions/${version}/comparison?${query}`), onDone);
    } catch (err) {
      dialog.replaceChildren(el("p", { class: "error", text: `Could not compare ${name} v${version}: ${err.message}` }),
        el("div", { class: "gate-actions" }, el("button", { class: "secondary", onclick: () => dialog.close() }, "Close")));
    }
  }

  showAgreement();
  return { open, showAgreement };
})();

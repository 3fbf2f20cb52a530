// Rendering of a trained model's metrics (as the training worker records them) and its confusion matrix.
"use strict";

const Metrics = (() => {
  function fact(name, value) {
    return el("div", { class: "fact" }, el("span", { class: "value", text: value }), el("span", { class: "name", text: name }));
  }

  function maybePercent(value) { return value === null || value === undefined ? "–" : percent(value); }

  function summary(metrics) {
    const test = metrics.test || metrics;
    const facts = [];
    if (metrics.primary) facts.push(fact(`${metrics.primary.name} (test)`, formatNumber(metrics.primary.value)));
    if (test.accuracy !== undefined) facts.push(fact("accuracy", maybePercent(test.accuracy)));
    if (test.macro) facts.push(fact("macro F1", maybePercent(test.macro.f1)));
    const nva = test.normal_vs_abnormal;
    if (nva) {
      facts.push(fact("AUC normal vs abnormal", nva.auc === null ? "–" : formatNumber(nva.auc)));
      facts.push(fact("sensitivity", maybePercent(nva.sensitivity)));
      facts.push(fact("specificity", maybePercent(nva.specificity)));
    }
    if (test.n !== undefined) facts.push(fact("test recordings", String(test.n)));
    if (!facts.length) {
      for (const [name, value] of Object.entries(metrics)) {
        if (typeof value === "number") facts.push(fact(name, formatNumber(value)));
      }
    }
    return facts.length ? el("div", { class: "metric-grid" }, facts) : el("p", { class: "muted", text: "No metrics." });
  }

  function confusion(metrics) {
    const cm = (metrics.test || metrics).confusion_matrix;
    if (!cm || !cm.classes || !cm.matrix) return null;
    const head = el("tr", {}, el("th", { text: "true \\ predicted" }), cm.classes.map((c) => el("th", { text: c })));
    const rows = cm.matrix.map((row, i) => el("tr", {}, el("th", { text: cm.classes[i] }),
      row.map((count, j) => el("td", { class: i === j ? "diag" : "", text: String(count) }))));
    return el("div", {}, el("h3", { text: "Confusion matrix (test split)" }),
      el("table", { class: "confusion" }, el("thead", {}, head), el("tbody", {}, rows)));
  }

  function perClass(metrics) {
    const pc = (metrics.test || metrics).per_class;
    if (!pc) return null;
    const rows = Object.entries(pc).map(([name, m]) => el("tr", {}, el("td", { text: name }),
      el("td", { text: maybePercent(m.precision) }), el("td", { text: maybePercent(m.recall) }),
      el("td", { text: maybePercent(m.f1) }), el("td", { text: m.auc === null ? "–" : formatNumber(m.auc) }),
      el("td", { text: String(m.support) })));
    return el("table", {}, el("thead", {}, el("tr", {}, ["class", "precision", "recall", "F1", "AUC", "support"]
      .map((h) => el("th", { text: h })))), el("tbody", {}, rows));
  }

  return { summary, confusion, perClass };
})();

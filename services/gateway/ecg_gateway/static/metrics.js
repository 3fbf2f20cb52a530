// Rendering of a trained model's metrics (as the training worker records them), its confusion matrix, and the
// model card's evaluation (per-class metrics with 95 % CIs, sensitivity at fixed specificity, calibration with a
// reliability diagram, subgroups), each shown only when present.
"use strict";

const Metrics = (() => {
  function fact(name, value) {
    return el("div", { class: "fact" }, el("span", { class: "value", text: value }), el("span", { class: "name", text: name }));
  }

  function maybePercent(value) { return value === null || value === undefined ? "–" : percent(value); }

  // A number, or {value, ci: [lo, hi]}: "0.912 (0.880–0.940)".
  function withCi(metric, asPercent = false) {
    if (metric === null || metric === undefined) return "–";
    const show = (v) => (typeof v !== "number" ? String(v) : asPercent ? percent(v) : formatNumber(v));
    if (typeof metric !== "object") return show(metric);
    const ci = Array.isArray(metric.ci) && metric.ci.length === 2 ? ` (95\u00a0% CI ${show(metric.ci[0])}–${show(metric.ci[1])})` : "";
    return `${show(metric.value)}${ci}`;
  }

  function table(headers, rows, attrs = {}) {
    return el("div", { class: "table-scroll" }, el("table", attrs,
      el("thead", {}, el("tr", {}, headers.map((h) => el("th", { text: h })))),
      el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((c) => (c instanceof Node ? c : el("td", { text: String(c) }))))))));
  }

  // The test split's headline numbers; the selection metric is not repeated when it is one of them.
  function summary(metrics) {
    const test = metrics.test || metrics;
    const facts = [];
    const primary = metrics.primary;
    const nva = test.normal_vs_abnormal;
    const primaryIsAuc = primary && /auc/i.test(primary.name) && nva && nva.auc !== undefined;
    if (primary && !primaryIsAuc) facts.push(fact(`${primary.name} (test, selection metric)`, formatNumber(primary.value)));
    if (test.accuracy !== undefined) facts.push(fact("accuracy", maybePercent(test.accuracy)));
    if (test.macro) facts.push(fact("macro F1", maybePercent(test.macro.f1)));
    if (nva) {
      facts.push(fact(`AUC normal vs abnormal${primaryIsAuc ? " (selection metric)" : ""}`, nva.auc === null ? "–" : formatNumber(nva.auc)));
      facts.push(fact("sensitivity", maybePercent(nva.sensitivity)));
      facts.push(fact("specificity", maybePercent(nva.specificity)));
    }
    if (test.n !== undefined) facts.push(fact("test recordings", String(test.n)));
    if (!facts.length) {
      for (const [name, value] of Object.entries(metrics)) {
        if (typeof value === "number") facts.push(fact(name.replaceAll("_", " "), formatNumber(value)));
      }
    }
    return facts.length ? el("div", { class: "metric-grid" }, facts) : el("p", { class: "muted", text: "No metrics." });
  }

  function confusionTable(cm, title) {
    if (!cm || !cm.classes || !cm.matrix) return null;
    const head = ["true \\ predicted", ...cm.classes.map((c) => Vocabulary.classWithCode(c))];
    const rows = cm.matrix.map((row, i) => [el("th", { text: Vocabulary.classWithCode(cm.classes[i]) }),
      ...row.map((count, j) => el("td", { class: i === j ? "diag" : "", text: String(count) }))]);
    return el("div", {}, el("h3", { text: title }), table(head, rows, { class: "confusion" }));
  }

  function confusion(metrics) {
    return confusionTable((metrics.test || metrics).confusion_matrix, "Confusion matrix (test split)");
  }

  function perClass(metrics) {
    const pc = (metrics.test || metrics).per_class;
    if (!pc) return null;
    const rows = Object.entries(pc).map(([name, m]) => [Vocabulary.classWithCode(name), maybePercent(m.precision),
      maybePercent(m.recall), maybePercent(m.f1), m.auc === null || m.auc === undefined ? "–" : formatNumber(m.auc),
      String(m.support ?? "–")]);
    return table(["class", "precision", "recall", "F1", "AUC", "support"], rows);
  }

  // Per-class rows from {class: {...}} or [{class, ...}].
  function entries(perClassMetrics) {
    if (Array.isArray(perClassMetrics)) return perClassMetrics.map((m) => [m.class ?? m.name ?? "?", m]);
    return Object.entries(perClassMetrics || {});
  }

  function sensitivityRows(value) {
    if (Array.isArray(value)) return value.map((v) => [v.specificity, v.sensitivity ?? v.value, v.threshold]);
    return Object.entries(value || {}).map(([spec, v]) => [Number(spec), typeof v === "object" && v !== null && !("value" in v) ? v.sensitivity : v, v && v.threshold]);
  }

  // Observed frequency against mean predicted probability per bin; the diagonal is perfect calibration.
  function reliabilityDiagram(bins) {
    const size = 180, pad = 28, inner = size - 2 * pad;
    const px = (p) => pad + p * inner, py = (p) => size - pad - p * inner;
    const points = bins.filter((b) => b.count > 0 && b.mean_predicted !== null && b.observed !== null);
    const ns = "http://www.w3.org/2000/svg";
    const node = (tag, attrs) => {
      const n = document.createElementNS(ns, tag);
      for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
      return n;
    };
    const svg = node("svg", { viewBox: `0 0 ${size} ${size}`, width: size, height: size, class: "reliability", role: "img",
      "aria-label": "Reliability diagram: observed frequency against predicted probability" });
    svg.append(node("rect", { x: pad, y: pad, width: inner, height: inner, fill: "#f8fafc", stroke: "#c8d1dc" }));
    svg.append(node("line", { x1: px(0), y1: py(0), x2: px(1), y2: py(1), stroke: "#9fb3cc", "stroke-dasharray": "4 3" }));
    if (points.length) {
      svg.append(node("polyline", { points: points.map((b) => `${px(b.mean_predicted)},${py(b.observed)}`).join(" "),
        fill: "none", stroke: "#1f5fae", "stroke-width": 2 }));
      for (const b of points) svg.append(node("circle", { cx: px(b.mean_predicted), cy: py(b.observed), r: 3, fill: "#1f5fae" }));
    }
    const text = (x, y, label, anchor = "middle") => {
      const t = node("text", { x, y, "font-size": 10, "text-anchor": anchor, fill: "#5d6b7c" });
      t.textContent = label;
      svg.append(t);
      return t;
    };
    text(size / 2, size - 6, "predicted probability");
    text(10, size / 2, "observed").setAttribute("transform", `rotate(-90 10 ${size / 2})`);
    text(pad, size - pad + 12, "0"); text(size - pad, size - pad + 12, "1");
    text(pad - 6, pad + 4, "1", "end");
    svg.dataset.bins = String(points.length);
    return svg;
  }

  function calibration(cal) {
    const facts = [];
    if (cal.method) facts.push(fact("method", String(cal.method)));
    if (cal.ece_before !== undefined) facts.push(fact("ECE before → after", `${formatNumber(cal.ece_before)} → ${formatNumber(cal.ece_after)}`));
    if (cal.brier_before !== undefined) facts.push(fact("Brier before → after", `${formatNumber(cal.brier_before)} → ${formatNumber(cal.brier_after)}`));
    const bins = Array.isArray(cal.bins) ? cal.bins : [];
    return el("div", { class: "calibration" }, el("h3", { text: "Calibration (test split)" }),
      el("div", { class: "metric-grid" }, facts),
      bins.length ? el("div", { class: "calibration-body" }, reliabilityDiagram(bins),
        table(["bin", "mean predicted", "observed", "recordings"],
          bins.map((b) => [`${formatNumber(b.lower)}–${formatNumber(b.upper)}`, b.mean_predicted === null ? "–" : formatNumber(b.mean_predicted),
            b.observed === null ? "–" : formatNumber(b.observed), String(b.count)]))) : null);
  }

  // Subgroups as given: {group: {metric: value}} or [{name/group, ...metrics}].
  function subgroups(groups) {
    const list = Array.isArray(groups) ? groups.map((g) => [g.name ?? g.group ?? g.subgroup ?? "?", g])
      : Object.entries(groups || {});
    if (!list.length) return null;
    const keys = [...new Set(list.flatMap(([, g]) => Object.keys(g || {})))].filter((k) => !["name", "group", "subgroup"].includes(k));
    return el("div", {}, el("h3", { text: "Subgroups (test split)" }),
      table(["subgroup", ...keys.map((k) => k.replaceAll("_", " "))],
        list.map(([name, g]) => [name, ...keys.map((k) => withCi(g[k]))])));
  }

  // The model card's evaluation object; parts that are absent are left out.
  function evaluation(ev) {
    if (!ev || typeof ev !== "object") return null;
    const parts = [];
    const pc = ev.per_class;
    if (pc) {
      parts.push(el("h3", { text: "Per class (test split, 95 % confidence intervals)" }),
        table(["class", "precision", "recall", "F1", "support"], entries(pc).map(([name, m]) => [
          Vocabulary.classWithCode(name), withCi(m.precision), withCi(m.recall), withCi(m.f1), String(m.support ?? m.n ?? "–")]),
          { class: "per-class-ci" }));
    }
    if (ev.confusion_matrix) parts.push(confusionTable(ev.confusion_matrix, "Confusion matrix (test split)"));
    const sens = ev.sensitivity_at_specificity;
    if (sens) {
      parts.push(el("h3", { text: "Sensitivity at fixed specificity (abnormal)" }),
        table(["specificity", "sensitivity", "threshold"], sensitivityRows(sens).map(([spec, value, threshold]) =>
          [typeof spec === "number" ? percent(spec, 0) : String(spec), withCi(value), threshold === undefined || threshold === null ? "–" : formatNumber(threshold)]),
          { class: "sensitivity" }));
    }
    if (ev.calibration) parts.push(calibration(ev.calibration));
    if (ev.subgroups) parts.push(subgroups(ev.subgroups));
    return parts.length ? el("div", { class: "evaluation" }, el("h3", { class: "section", text: "Evaluation" }), parts) : null;
  }

  // Metric keys as the training worker writes them, by the names the comparison shows.
  const METRIC_NAMES = { macro_f1: "macro F1", auc_abnormal: "AUC normal vs abnormal", accuracy: "accuracy",
    mean_f1_readable: "mean F1 over readable classes" };

  // Numeric test metrics by a readable name, for comparing versions side by side.
  function comparable(metrics) {
    const out = new Map();
    if (!metrics) return out;
    const test = metrics.test || metrics;
    const add = (key, value) => {
      const name = METRIC_NAMES[key] || key.replaceAll("_", " ");
      if (typeof value === "number" && !out.has(name)) out.set(name, value);
    };
    add("accuracy", test.accuracy);
    if (test.macro) add("macro_f1", test.macro.f1);
    const nva = test.normal_vs_abnormal;
    if (nva) {
      add("auc_abnormal", nva.auc);
      add("sensitivity", nva.sensitivity);
      add("specificity", nva.specificity);
    }
    for (const [key, value] of Object.entries(test)) add(key, value);
    if (metrics.primary) add(metrics.primary.name, metrics.primary.value);
    if (typeof test.n === "number") { out.delete("n"); out.set("test recordings", test.n); }
    return out;
  }

  return { summary, confusion, perClass, evaluation, comparable, withCi };
})();

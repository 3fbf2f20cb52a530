// Training jobs: start one from the form, watch the list and the selected job update live (polling).
"use strict";

(() => {
  const form = document.getElementById("training-form");
  const errorBox = document.getElementById("training-error");
  const list = document.getElementById("training-jobs");
  const detail = document.getElementById("training-detail");
  const POLL_MS = 2000;
  let selected = null;

  const words = (value) => value.split(",").map((s) => s.trim()).filter(Boolean);

  function requestFromForm() {
    const data = new FormData(form);
    const request = {
      dataset: data.get("dataset").trim(),
      extra_datasets: words(data.get("extra_datasets") || ""),
      family: data.get("family"),
      epochs: Number(data.get("epochs")),
      batch_size: Number(data.get("batch_size")),
      leads: words(data.get("leads")),
      normal_classes: words(data.get("normal_classes")),
      unreadable_classes: words(data.get("unreadable_classes")),
      window_s: Number(data.get("window_s")),
      sampling_rate: Number(data.get("sampling_rate")),
      auto_promote: data.get("auto_promote") === "on",
    };
    if (data.get("name").trim()) request.name = data.get("name").trim();
    if (data.get("max_recordings")) request.filters = { max_recordings: Number(data.get("max_recordings")) };
    return request;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    errorBox.hidden = true;
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      const job = await api("/api/training-jobs", { method: "POST", json: requestFromForm() });
      selected = job.id;
      await refresh();
    } catch (err) {
      errorBox.textContent = `Could not start the job: ${err.message}`;
      errorBox.hidden = false;
    } finally {
      button.disabled = false;
    }
  });

  const datasets = (job) => [job.dataset, ...(job.request.extra_datasets || [])].join(" + ");

  function progressText(job) {
    return `epoch ${job.epoch} / ${job.epochs}`;
  }

  function renderList(jobs) {
    document.getElementById("training-empty").hidden = jobs.length > 0;
    list.replaceChildren(...jobs.map((job) => el("tr", {
      class: `selectable${job.id === selected ? " selected" : ""}`, "data-job": job.id,
      onclick: () => { selected = job.id; refresh(); },
    },
    el("td", { text: job.id }), el("td", { text: job.model_name }), el("td", { text: datasets(job) }),
    el("td", { text: job.family }), el("td", {}, el("span", { class: `badge badge-${job.status}`, text: job.status })),
    el("td", { text: progressText(job) }), el("td", { text: formatTime(job.created_at) }))));
  }

  function renderDetail(job) {
    detail.hidden = false;
    detail.dataset.job = job.id;
    detail.dataset.model = job.model_name;
    const parts = [
      el("h2", {}, `Job ${job.id}: ${job.model_name} `, el("span", { class: `badge badge-${job.status}`, "data-status": job.status, text: job.status })),
      el("div", { class: "progress", title: progressText(job) },
        el("span", { style: `width:${job.epochs ? (100 * job.epoch / job.epochs).toFixed(0) : 0}%` })),
      el("dl", { class: "kv" },
        el("dt", { text: "progress" }), el("dd", { text: progressText(job) }),
        el("dt", { text: "dataset" }), el("dd", { text: datasets(job) }),
        el("dt", { text: "started" }), el("dd", { text: formatTime(job.started_at) }),
        el("dt", { text: "finished" }), el("dd", { text: formatTime(job.finished_at) }),
        job.model_version ? [el("dt", { text: "model version" }), el("dd", {}, el("a", { href: "/models", text: `${job.model_name} v${job.model_version}` }))] : null,
        job.worker_hostname ? [el("dt", { text: "worker" }), el("dd", { text: `${job.worker_hostname} (attempt ${job.attempts})` })] : null),
    ];
    if (job.error) parts.push(el("div", { class: "error", text: job.error }));
    if (job.progress.length) {
      parts.push(el("h3", { text: "Epochs" }), el("table", {},
        el("thead", {}, el("tr", {}, ["epoch", "loss", "validation", "seconds"].map((h) => el("th", { text: h })))),
        el("tbody", {}, job.progress.map((p) => el("tr", {}, el("td", { text: p.epoch }),
          el("td", { text: formatNumber(p.loss) }),
          el("td", { text: Object.entries(p.validation).map(([k, v]) => `${k} ${formatNumber(v)}`).join(" · ") || "–" }),
          el("td", { text: formatNumber(p.seconds) }))))));
    }
    const gate = job.metrics.promotion_gate;
    if (gate) {  // auto_promote: what the promotion gate decided
      parts.push(el("p", { class: "promotion", "data-promoted": String(job.metrics.promoted) },
        el("strong", { text: job.metrics.promoted ? "Promoted" : "Not promoted" }), `: ${gate.reason}`));
    }
    if (job.status === "succeeded" && Object.keys(job.metrics).length) {
      parts.push(el("h3", { text: "Test metrics" }), Metrics.summary(job.metrics), Metrics.confusion(job.metrics),
        Metrics.perClass(job.metrics));
    }
    if (job.status === "queued" || job.status === "running") {
      parts.push(el("p", {}, el("button", {
        class: "secondary", disabled: job.cancel_requested,
        onclick: async () => {
          try { await api(`/api/training-jobs/${job.id}/cancel`, { method: "POST" }); await refresh(); }
          catch (err) { errorBox.textContent = `Could not cancel: ${err.message}`; errorBox.hidden = false; }
        },
      }, job.cancel_requested ? "Cancelling…" : "Cancel job")));
    }
    detail.replaceChildren(...parts);
  }

  async function refresh() {
    try {
      const { jobs } = await api("/api/training-jobs");
      renderList(jobs);
      if (selected === null && jobs.length) selected = jobs[0].id;
      if (selected !== null) renderDetail(await api(`/api/training-jobs/${selected}`));
    } catch (err) {
      errorBox.textContent = `Could not load jobs: ${err.message}`;
      errorBox.hidden = false;
    }
  }

  refresh();
  setInterval(refresh, POLL_MS);
})();

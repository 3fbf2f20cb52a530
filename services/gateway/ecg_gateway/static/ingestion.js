// Ingestion jobs: start one (credentials go to the server once, never back), follow counts and failures live.
"use strict";

(() => {
  const form = document.getElementById("ingestion-form");
  const errorBox = document.getElementById("ingestion-error");
  const list = document.getElementById("ingestion-jobs");
  const detail = document.getElementById("ingestion-detail");
  let selected = null;

  function requestFromForm() {
    const data = new FormData(form);
    const request = {};
    for (const name of ["dataset", "container", "account_url", "sas_token", "connection_string", "manifest",
      "prefix", "blob_column", "label_column", "format"]) {
      const value = (data.get(name) || "").trim();
      if (value) request[name] = value;
    }
    return request;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    errorBox.hidden = true;
    try {
      const job = await api("/api/ingestion-jobs", { method: "POST", json: requestFromForm() });
      form.querySelector("[name=sas_token]").value = "";
      form.querySelector("[name=connection_string]").value = "";
      selected = job.id;
      await refresh();
    } catch (err) {
      errorBox.textContent = `Could not start the job: ${err.message}`;
      errorBox.hidden = false;
    }
  });

  function renderList(jobs) {
    document.getElementById("ingestion-empty").hidden = jobs.length > 0;
    list.replaceChildren(...jobs.map((job) => el("tr", {
      class: `selectable${job.id === selected ? " selected" : ""}`, "data-job": job.id,
      onclick: () => { selected = job.id; refresh(); },
    },
    el("td", { text: job.id }), el("td", { text: job.dataset }), el("td", { text: job.source }),
    el("td", {}, el("span", { class: `badge badge-${job.status}`, text: job.status })),
    el("td", { text: job.listed }), el("td", { text: job.stored }), el("td", { text: job.skipped }),
    el("td", { text: job.failed }), el("td", { text: formatTime(job.created_at) }))));
  }

  function renderDetail(job) {
    detail.hidden = false;
    detail.dataset.job = job.id;
    detail.dataset.dataset = job.dataset;
    const done = job.stored + job.skipped + job.failed;
    const parts = [
      el("h2", {}, `Job ${job.id}: ${job.dataset} `, el("span", { class: `badge badge-${job.status}`, "data-status": job.status, text: job.status })),
      el("div", { class: "progress" }, el("span", { style: `width:${job.listed ? (100 * done / job.listed).toFixed(0) : 0}%` })),
      el("dl", { class: "kv" },
        el("dt", { text: "source" }), el("dd", { text: job.source }),
        el("dt", { text: "what" }), el("dd", { text: job.manifest ? `manifest ${job.manifest}` : job.manifest_rows ? `${job.manifest_rows} listed rows` : `every blob under "${job.prefix || ""}"` }),
        el("dt", { text: "progress" }), el("dd", { text: `${done} of ${job.listed} handled: ${job.stored} stored, ${job.skipped} already there, ${job.failed} failed` }),
        el("dt", { text: "started" }), el("dd", { text: formatTime(job.started_at) }),
        el("dt", { text: "finished" }), el("dd", { text: formatTime(job.finished_at) })),
    ];
    if (job.error) parts.push(el("div", { class: "error", text: job.error }));
    if (job.failures.length) {
      parts.push(el("h3", { text: `Failures (first ${job.failures.length} of ${job.failed})` }), el("table", {},
        el("thead", {}, el("tr", {}, el("th", { text: "blob" }), el("th", { text: "reason" }))),
        el("tbody", {}, job.failures.map((f) => el("tr", {}, el("td", { text: f.blob }), el("td", { text: f.reason }))))));
    }
    detail.replaceChildren(...parts);
  }

  async function refresh() {
    try {
      const { jobs } = await api("/api/ingestion-jobs");
      renderList(jobs);
      if (selected === null && jobs.length) selected = jobs[0].id;
      if (selected !== null) renderDetail(await api(`/api/ingestion-jobs/${selected}`));
    } catch (err) {
      errorBox.textContent = `Could not load jobs: ${err.message}`;
      errorBox.hidden = false;
    }
  }

  refresh();
  setInterval(refresh, 2000);
})();

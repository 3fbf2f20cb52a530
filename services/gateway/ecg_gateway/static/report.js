// The upload page's printable report. After a classification (upload.js announces it with "ecg:classified"), the
// same file and format hints, with the optional patient fields, go to POST /classify/report; the PDF it answers is
// saved as a download. The patient fields are cleared for every new upload, so one patient's name never lands on
// the next recording's page, and they are sent only in the request body (never in the URL).
"use strict";

(() => {
  const card = document.getElementById("report-card");
  const form = document.getElementById("report-form");
  const button = document.getElementById("report-download");
  const statusLine = document.getElementById("report-status");
  const errorBox = document.getElementById("report-error");
  let upload = null;   // {file, format, fs} of the classification on screen

  function reset() {
    upload = null;
    form.reset();
    card.hidden = true;
    statusLine.textContent = "";
    errorBox.hidden = true;
    errorBox.textContent = "";
  }

  function filenameOf(response) {
    const match = /filename="([^"]+)"/.exec(response.headers.get("content-disposition") || "");
    return match ? match[1] : "ecg-report.pdf";
  }

  async function download(event) {
    event.preventDefault();
    if (!upload) return;
    const { file, format, fs } = upload;
    const body = new FormData();
    body.append("file", file, file.name);
    if (format) body.append("format", format);
    if (fs) body.append("fs", fs);
    for (const field of ["patient_name", "patient_id"]) {
      const value = form.elements[field].value.trim();
      if (value) body.append(field, value);
    }
    const headers = {};
    if (ApiKey.get()) headers["X-API-Key"] = ApiKey.get();
    errorBox.hidden = true;
    button.disabled = true;
    statusLine.textContent = `Preparing the report for ${file.name}…`;
    try {
      let response;
      try {
        response = await fetch("/classify/report", { method: "POST", headers, body });
      } catch (err) {
        throw new Error("cannot reach the server; check your connection");
      }
      if (!response.ok) {
        let payload = null;
        try { payload = await response.json(); } catch (err) { payload = null; }
        throw new Error(payload && payload.detail !== undefined
          ? describeDetail(payload.detail, response.status) : `the server answered HTTP ${response.status}`);
      }
      const name = filenameOf(response);
      const url = URL.createObjectURL(await response.blob());
      const link = el("a", { href: url, download: name, hidden: true });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
      if (upload && upload.file === file) statusLine.textContent = `Report for ${file.name} saved as ${name}`;
    } catch (err) {
      if (upload && upload.file === file) {
        statusLine.textContent = "";
        errorBox.textContent = `Could not make the report for "${file.name}": ${err.message}`;
        errorBox.hidden = false;
      }
    } finally {
      button.disabled = false;
    }
  }

  document.addEventListener("ecg:upload-started", reset);
  document.addEventListener("ecg:classified", (event) => {
    reset();
    upload = event.detail;
    document.getElementById("report-file").textContent = upload.file.name;
    card.hidden = false;
  });
  form.addEventListener("submit", download);
})();

// Keeping a classification for review and reviewing it on the upload page: the reviewer's name, the right reading
// (normal, abnormal or unreadable), a comment; every review of the recording, and whether reviewers disagree.
"use strict";

const Review = (() => {
  const panel = document.getElementById("review-panel");
  const keepBox = document.getElementById("keep-for-review");
  const READING = { normal: "Normal", abnormal: "Abnormal", unreadable: "Unreadable" };
  const NAME_KEY = "ecg-reviewer";
  let recordingId = null;

  function keepParam() {
    return keepBox && keepBox.checked && ApiKey.get() ? "&keep=true" : "";
  }

  function clear() {
    recordingId = null;
    panel.hidden = true;
    panel.replaceChildren();
  }

  function note(text, cls = "muted") {
    panel.replaceChildren(el("h2", { text: "Clinician review" }), el("p", { class: cls, id: "review-note", text }));
    panel.hidden = false;
  }

  function show(result) {
    clear();
    const kept = result.kept;
    if (!kept) {
      if (keepBox && keepBox.checked) note("Not kept for review: type the API key in the header bar to keep recordings.");
      return;
    }
    if (!kept.recording_id) { note(`Not kept for review: ${kept.problem}.`, "bad"); return; }
    recordingId = kept.recording_id;
    renderForm(result.verdict.label);
    load();
  }

  function renderForm(verdict) {
    const choices = Object.entries(READING).map(([value, word]) => el("label", { class: "review-choice" },
      el("input", { type: "radio", name: "review-label", value, checked: value === verdict }),
      ` ${word}${value === verdict ? " (confirms the verdict)" : ""}`));
    const form = el("form", { id: "review-form", class: "review-form", onsubmit: submit },
      el("label", {}, "Reviewer ", el("input", { id: "reviewer", required: true, maxlength: 100,
        placeholder: "your name", value: sessionStorage.getItem(NAME_KEY) || "" })),
      el("fieldset", {}, el("legend", { text: "The right reading" }), choices),
      el("label", {}, "Comment (optional) ", el("textarea", { id: "review-comment", rows: 2, maxlength: 2000 })),
      el("button", { type: "submit", id: "save-review" }, "Save review"),
      el("div", { id: "review-error", class: "error", role: "alert", hidden: true }));
    panel.replaceChildren(
      el("h2", { text: "Clinician review" }),
      el("p", { class: "muted", id: "review-kept",
        text: `Kept as recording #${recordingId} (dataset "reviewed"; no file name or patient details kept).` }),
      form,
      el("div", { id: "review-summary", "aria-live": "polite" }),
      el("ul", { id: "review-list", class: "review-list" }));
    panel.hidden = false;
  }

  async function submit(event) {
    event.preventDefault();
    const errorBox = document.getElementById("review-error");
    errorBox.hidden = true;
    const reviewer = document.getElementById("reviewer").value.trim();
    const chosen = panel.querySelector("input[name=review-label]:checked");
    if (!chosen) { errorBox.textContent = "Choose the right reading."; errorBox.hidden = false; return; }
    sessionStorage.setItem(NAME_KEY, reviewer);
    const comment = document.getElementById("review-comment").value.trim();
    try {
      const summary = await api(`/api/recordings/${recordingId}/reviews`, {
        method: "POST", json: { reviewer, label: chosen.value, comment: comment || null } });
      document.getElementById("review-comment").value = "";
      renderReviews(summary);
    } catch (err) {
      errorBox.textContent = `Could not save the review: ${err.message}`;
      errorBox.hidden = false;
    }
  }

  async function load() {
    try {
      renderReviews(await api(`/api/recordings/${recordingId}/reviews`));
    } catch (err) {
      document.getElementById("review-summary").textContent = `Could not load the reviews: ${err.message}`;
    }
  }

  function renderReviews(summary) {
    if (summary.recording_id !== recordingId) return;  // an answer for a recording no longer shown
    const box = document.getElementById("review-summary");
    box.dataset.disagreement = String(summary.disagreement);
    if (!summary.reviews.length) {
      box.replaceChildren(el("p", { class: "muted", text: "Not reviewed yet." }));
    } else if (summary.disagreement) {
      box.replaceChildren(el("p", { class: "bad review-disagreement", text: "Reviewers disagree: "
        + summary.reviews.map((r) => `${r.reviewer} says ${READING[r.label].toLowerCase()}`).join(", ")
        + ". It is left out of training and of live agreement until they agree." }));
    } else {
      box.replaceChildren(el("p", { class: "ok", text: `Reviewed as ${READING[summary.settled_label].toLowerCase()}`
        + ` by ${summary.reviews.length} reviewer${summary.reviews.length === 1 ? "" : "s"}.` }));
    }
    document.getElementById("review-list").replaceChildren(...summary.reviews.map((r) => el("li", { "data-reviewer": r.reviewer },
      el("strong", { text: r.reviewer }), `: ${READING[r.label]}`,
      r.agrees_with_verdict === null ? "" : r.agrees_with_verdict ? " (confirms the verdict)" : " (corrects the verdict)",
      r.comment ? ` · “${r.comment}”` : "", el("span", { class: "muted", text: ` · ${formatTime(r.updated_at)}` }))));
  }

  return { keepParam, show, clear };
})();

// pulling-agent console: live refresh of [data-refresh] sections and actions sent with the
// session's CSRF token. No dependencies; text from the server is inserted as the server
// rendered (and escaped) it, messages as text only.
"use strict";

const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content || "";
const headers = (json) => {
  const h = { "X-CSRF-Token": csrf(), "X-Pulling-Agent": "console" };
  if (json) h["Content-Type"] = "application/json";
  return h;
};

function flash(message, isError) {
  const box = document.getElementById("flash");
  if (!box) return;
  box.textContent = message;
  box.classList.toggle("error", Boolean(isError));
}

function signInAgain() {
  const view = location.pathname.split("/").pop() || "overview";
  location.assign("/ui/login?next=" + encodeURIComponent(view));
}

// On a phone a table's rows become cards (console.css): each cell shows its column's name
function labelCells(root) {
  root.querySelectorAll("table.grid").forEach((table) => {
    const names = [...table.querySelectorAll("thead th")].map((th) => th.textContent.trim());
    table.querySelectorAll("tbody tr").forEach((row) => {
      [...row.children].forEach((cell, i) => {
        if (names[i] && !cell.hasAttribute("colspan")) cell.dataset.label = names[i];
      });
    });
  });
}

async function refresh(section) {
  const url = section.dataset.refresh + location.search;
  let response;
  try {
    response = await fetch(url, { credentials: "same-origin", headers: headers(false) });
  } catch (err) {
    flash("The agent did not answer; retrying.", true);
    return;
  }
  if (response.status === 401) return signInAgain();
  if (!response.ok) return;
  const checked = new Set(
    [...section.querySelectorAll('input[name="ids"]:checked')].map((box) => box.value));
  const open = new Set([...section.querySelectorAll("details[open]")].map((d, i) => i));
  const focused = document.activeElement && section.contains(document.activeElement)
    ? document.activeElement.name : null;
  if (focused) return; // do not swap a form the user is typing in
  section.innerHTML = await response.text();
  section.querySelectorAll('input[name="ids"]').forEach((box) => {
    box.checked = checked.has(box.value);
  });
  section.querySelectorAll("details").forEach((d, i) => { if (open.has(i)) d.open = true; });
  labelCells(section);
  section.dataset.refreshedAt = String(Date.now());
}

function startRefreshing() {
  document.querySelectorAll("[data-refresh]").forEach((section) => {
    const seconds = Number(section.dataset.interval || "3");
    setInterval(() => {
      if (document.visibilityState === "visible") refresh(section);
    }, Math.max(1, seconds) * 1000);
  });
}

function formBody(form, submitter) {
  const data = new FormData(form);
  const body = {};
  for (const [key, value] of data.entries()) {
    if (key === "ids") (body.ids = body.ids || []).push(value);
    else body[key] = value;
  }
  if (submitter && submitter.name) body[submitter.name] = submitter.value;
  return body;
}

async function preview(form, body) {
  const query = new URLSearchParams({ type: body.type || "", q: body.q || "" });
  const response = await fetch(form.dataset.preview + "?" + query, {
    credentials: "same-origin", headers: headers(false),
  });
  if (response.status === 401) return signInAgain();
  const { count } = await response.json();
  return count;
}

async function act(event) {
  const form = event.target.closest("form[data-action]");
  if (!form) return;
  event.preventDefault();
  const submitter = event.submitter;
  const body = formBody(form, submitter);
  let url = form.dataset.action;
  if (form.hasAttribute("data-command-form")) {
    if (!body.reason || !body.reason.trim()) return flash("Give a reason first.", true);
    url += encodeURIComponent(body.command);
  }
  if (form.id === "requeue") {
    if (body.mode === "all") {
      const count = await preview(form, body);
      if (count === undefined) return;
      if (!confirm(`Requeue all ${count} matching document(s)?`)) return;
      body.all_matching = true;
    } else if (!body.ids || body.ids.length === 0) {
      return flash("Select documents first.", true);
    }
  }
  const question = (submitter && submitter.dataset.confirm) || form.dataset.confirm;
  if (question && !(form.id === "requeue" && body.all_matching) && !confirm(question)) return;
  if (submitter) submitter.disabled = true;
  try {
    const response = await fetch(url, {
      method: "POST", credentials: "same-origin", headers: headers(true), body: JSON.stringify(body),
    });
    if (response.status === 401) return signInAgain();
    const result = await response.json().catch(() => ({}));
    if (!response.ok) {
      const detail = typeof result.detail === "string" ? result.detail : JSON.stringify(result.detail);
      flash(`Refused (${response.status}): ${detail || "error"}`, true);
    } else {
      flash(result.message || "Done.", false);
    }
  } finally {
    if (submitter) submitter.disabled = false;
    document.querySelectorAll("[data-refresh]").forEach(refresh);
  }
}

document.addEventListener("submit", act);
document.addEventListener("change", (event) => {
  if (event.target.matches("[data-select-all]")) {
    const table = event.target.closest("table");
    table.querySelectorAll('input[name="ids"]').forEach((box) => { box.checked = event.target.checked; });
  }
});
document.addEventListener("DOMContentLoaded", () => {
  labelCells(document);
  startRefreshing();
});

// The console's only script: live progress over server-sent events, CSV upload with a progress bar, and
// filling the campaign form from a chosen file. Every value from the server is set with textContent or an
// attribute, never as markup (the upload report is HTML the server escaped).
"use strict";

function pct(x) { return Math.round(x * 100) + " %"; }

function drawChart(svg, counts) {
  if (!svg) return;
  const NS = "http://www.w3.org/2000/svg";
  const entries = Object.entries(counts).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  const max = Math.max(1, ...entries.map((e) => e[1]));
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  svg.setAttribute("viewBox", "0 0 400 " + Math.max(1, entries.length) * 28);
  const text = (x, y, s, cls) => {
    const t = document.createElementNS(NS, "text");
    t.setAttribute("x", x); t.setAttribute("y", y);
    if (cls) t.setAttribute("class", cls);
    t.textContent = s;
    svg.appendChild(t);
  };
  if (entries.length === 0) text(0, 18, "none yet");
  entries.forEach(([k, v], i) => {
    const y = i * 28, w = Math.round((v / max) * 200);
    text(0, y + 18, k);
    const r = document.createElementNS(NS, "rect");
    r.setAttribute("x", 150); r.setAttribute("y", y + 4); r.setAttribute("width", w); r.setAttribute("height", 18);
    r.setAttribute("class", "bar");
    svg.appendChild(r);
    text(155 + w, y + 18, String(v), "n");
  });
}

function setText(id, s) { const el = document.getElementById(id); if (el) el.textContent = s; }

function liveProgress(root) {
  const es = new EventSource(root.dataset.events);
  es.onmessage = (ev) => {
    const p = JSON.parse(ev.data);
    const bar = document.getElementById("progress");
    if (bar) bar.value = Math.round(p.percent_done * 100);
    setText("percent", pct(p.percent_done));
    setText("status", p.status);
    setText("contacts", String(p.contacts));
    setText("backlog", String(p.backlog));
    setText("in-flight", String(p.calls_in_flight));
    setText("calls", String(p.calls_requested));
    setText("cps-now", p.calls_per_second.toFixed(1));
    setText("answer-rate", p.answer_rate == null ? "—" : pct(p.answer_rate));
    drawChart(document.getElementById("outcomes-chart"), p.by_outcome);
    drawChart(document.getElementById("results-chart"), p.by_result);
    root.dataset.live = String(Number(root.dataset.live || 0) + 1);
  };
  es.addEventListener("attempts", (ev) => drawAttempts(JSON.parse(ev.data)));
}

// The same rows as the server's attempts_table (pages.rs).
function drawAttempts(rows) {
  const body = document.querySelector("#attempts tbody");
  if (!body) return;
  const when = (t) => t ? t.replace("T", " ").replace(/\.\d+/, "").replace("Z", " UTC") : "—";
  const dash = (v) => (v == null ? "—" : String(v));
  const fresh = document.createElement("tbody");
  for (const r of rows) {
    const tr = document.createElement("tr");
    const cell = (s, cls) => { const td = document.createElement("td"); td.textContent = s; if (cls) td.className = cls; tr.appendChild(td); return td; };
    cell(when(r.requested_at));
    const a = document.createElement("a");
    a.href = "/console/contacts/" + Number(r.contact_id);
    a.textContent = r.external_id == null ? "#" + r.contact_id : r.external_id;
    cell("").appendChild(a);
    cell(String(r.attempt_no));
    cell(dash(r.call_sid), "sid");
    cell(r.call_status == null ? r.state : r.call_status);
    cell(dash(r.outcome));
    cell(dash(r.result));
    cell(dash(r.duration_s));
    fresh.appendChild(tr);
  }
  body.replaceWith(fresh);
}

function csvUpload(form) {
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const file = document.getElementById("csv").files[0];
    if (!file) return;
    const bar = document.getElementById("upload-progress");
    const report = document.getElementById("upload-report");
    const params = new URLSearchParams();
    const region = document.getElementById("region").value.trim();
    if (region) params.set("region", region);
    params.set("skip_invalid", document.getElementById("skip-invalid").checked ? "true" : "false");
    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.dataset.url + "?" + params.toString());
    xhr.setRequestHeader("Content-Type", "text/csv");
    xhr.setRequestHeader("X-CSRF-Token", form.dataset.csrf);
    bar.hidden = false; bar.value = 0;
    report.textContent = "Uploading…";
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = Math.round((e.loaded / e.total) * 100); };
    xhr.onload = () => {
      bar.value = 100;
      if (xhr.responseURL.endsWith("/console/login")) {
        report.textContent = "Your session has ended; log in again and repeat the upload.";
      } else {
        report.innerHTML = xhr.responseText; // the server's escaped fragment
      }
    };
    xhr.onerror = () => { report.textContent = "The upload failed; check the connection and try again."; };
    xhr.send(file);
  });
}

function fileFills(input) {
  input.addEventListener("change", () => {
    const f = input.files[0];
    if (!f) return;
    const reader = new FileReader();
    reader.onload = () => {
      document.getElementById(input.dataset.fills).value = reader.result;
      document.getElementById(input.dataset.name).value = f.name;
    };
    reader.readAsText(f);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("campaign");
  if (root && window.EventSource) liveProgress(root);
  const up = document.getElementById("upload");
  if (up) csvUpload(up);
  document.querySelectorAll("input[type=file][data-fills]").forEach(fileFills);
});

// The operator dashboard: polls /dashboard/data (the session cookie authenticates it) and draws
// receipts per second from the committed-receipts counter between two polls.
"use strict";

const POLL_MS = 1000;
const KEEP = 120; // samples on the chart
const rates = [];
let last = null; // {t, committed} of the previous poll

function text(id, value) { document.getElementById(id).textContent = String(value); }

function rows(tbody, list) {
  tbody.replaceChildren(...list.map((cells) => {
    const tr = document.createElement("tr");
    for (const c of cells) {
      const td = document.createElement("td");
      td.textContent = String(c.text !== undefined ? c.text : c);
      if (c.cls) td.className = c.cls;
      tr.appendChild(td);
    }
    return tr;
  }));
}

function draw() {
  const canvas = document.getElementById("rate-chart");
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  canvas.width = Math.round(w * ratio);
  canvas.height = Math.round(h * ratio);
  const g = canvas.getContext("2d");
  g.scale(ratio, ratio);
  g.clearRect(0, 0, w, h);
  const max = Math.max(1, ...rates);
  const pad = 28;
  g.strokeStyle = "#e3e7ee"; g.fillStyle = "#7a8699"; g.font = "11px system-ui, sans-serif";
  for (const f of [0, 0.5, 1]) {
    const y = h - 14 - f * (h - 24);
    g.beginPath(); g.moveTo(pad, y); g.lineTo(w, y); g.stroke();
    g.fillText((max * f).toFixed(max * f < 10 ? 1 : 0), 0, y + 4);
  }
  if (rates.length > 1) {
    const step = (w - pad) / (KEEP - 1);
    const x0 = w - (rates.length - 1) * step;
    g.beginPath();
    rates.forEach((r, i) => {
      const x = x0 + i * step, y = h - 14 - (r / max) * (h - 24);
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
    });
    g.strokeStyle = "#1f6feb"; g.lineWidth = 2; g.stroke();
  }
  canvas.dataset.samples = String(rates.length);
  canvas.dataset.max = String(Math.max(0, ...rates));
}

function show(d) {
  text("node-id", d.node_id); text("chain-id", d.chain_id); text("updated", "updated " + d.time);
  text("height", d.height); text("round", d.round); text("peers", d.peers.length);
  text("mempool", d.mempool_size); text("chargers-online", d.chargers_online); text("committed", d.receipts_committed);
  rows(document.querySelector("#nodes tbody"), d.nodes.map((n) => n.ok
    ? [n.node_id, n.height, n.round, n.peers_connected, "up"]
    : [n.node_id, "–", "–", "–", {text: "unreachable: " + n.error, cls: "down"}]));
  document.querySelector("#nodes").dataset.reachable = String(d.nodes.filter((n) => n.ok).length);
  const rejects = Object.entries(d.rejects).sort((a, b) => b[1] - a[1]);
  rows(document.querySelector("#rejects tbody"), rejects);
  document.getElementById("no-rejects").hidden = rejects.length > 0;
  text("quarantined", d.quarantined);
  document.getElementById("quarantine").hidden = !d.quarantined;
  const t = Date.now();
  if (last !== null && t > last.t) {
    rates.push(Math.max(0, d.receipts_committed - last.committed) * 1000 / (t - last.t));
    if (rates.length > KEEP) rates.shift();
  }
  last = {t, committed: d.receipts_committed};
  draw();
}

async function poll() {
  const error = document.getElementById("error");
  try {
    const resp = await fetch("/dashboard/data", {credentials: "same-origin", cache: "no-store"});
    if (resp.status === 401) { window.location.reload(); return; } // the session ended: the login form
    if (!resp.ok) throw new Error("the node answered " + resp.status);
    show(await resp.json());
    error.hidden = true;
  } catch (e) {
    error.textContent = "Cannot read the node: " + e.message;
    error.hidden = false;
  }
  setTimeout(poll, POLL_MS);
}

window.addEventListener("resize", draw);
poll();

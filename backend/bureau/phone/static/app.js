// The driver's phone page: binding, verified balance and bills, and the start from a charger's
// QR code (#start=<charger_id>). Nothing the node says is shown unless verify.js proved it,
// except the open holds, which live on the node and are labelled as its figures.
import { bindTx, getPublic, loadKeep, newPhoneKey, NodeError, normaliseCode, peerHead, saveKeep, signedRequest } from "./client.js";
import { currentLang, pickLang, setLang, t } from "./i18n.js";
import { ed25519Backend, genesisHash, periodsOf, toHex, verifyAmount, verifyOcppBillProof, verifyReceiptProof,
  verifyStateAnswer } from "./verify.js";

const $ = (id) => document.getElementById(id);
const ID_RE = /^[A-Za-z0-9._-]{1,32}$/;
const BIND_WAIT_MS = 90_000;
const REFRESH_MS = 15_000;
const BEHIND_BLOCKS = 2;  // a block or so in flight between nodes is normal
const MAX_CAP_FEN = 50_000;  // the node's default most for one authorization (docs/settings.md)

let keep = loadKeep();
let genesis = null;          // the node's genesis document, checked against the pinned hash
let node = null;             // {node_id, height}
const bills = new Map();     // "charger#seq" → verified bill, kept across refreshes
const tariffs = new Map();   // "id/version" → {doc, record} proven once

// ---- showing things ------------------------------------------------------------------------

const yuan = (fen) => {
  const f = BigInt(fen), sign = f < 0n ? "-" : "", a = f < 0n ? -f : f;
  return `${sign}¥${a / 100n}.${String(a % 100n).padStart(2, "0")}`;
};
const kwh = (wh) => `${(Number(wh) / 1000).toFixed(3)} kWh`;
const dateTime = () => new Intl.DateTimeFormat(currentLang() === "zh" ? "zh-CN" : "en-GB",
  { dateStyle: "medium", timeStyle: "short" });
const when = (unixS) => dateTime().format(new Date(Number(unixS) * 1000));
// a session's start and end, the day said once when both are on it
const span = (startS, endS) => dateTime().formatRange(new Date(Number(startS) * 1000), new Date(Number(endS) * 1000));

// Parts of a line, each kept whole (a wrap falls between them, never inside "block 6"), " · " between.
const parts = (...texts) => texts.flatMap((text, i) => [...(i ? [" · "] : []), el("span", { class: "part" }, text)]);

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k.startsWith("data-")) e.setAttribute(k, v); else e[k] = v;
  }
  e.append(...children);
  return e;
}

// One notice per kind (offline, behind, refused, other_chain); null clears it.
function notice(kind, text) {
  let p = $("notices").querySelector(`[data-kind="${kind}"]`);
  if (text === null) { p?.remove(); return; }
  if (!p) { p = el("p", { "data-kind": kind, role: "alert" }); $("notices").append(p); }
  p.textContent = text;
}

function reportError(e, where) {
  if (!(e instanceof NodeError)) throw e;
  if (e.kind === "offline") { notice("offline", t("offline", { detail: e.message })); return; }
  notice("offline", null);
  const text = t("refused", { reason: e.reason, detail: e.message });
  if (where) where.textContent = text; else notice("refused", text);
}

function mark(target, result) {
  target.dataset.verified = String(result.ok);
  target.textContent = result.ok ? t("verified") : `${t("not_verified")}: ${result.reason} — ${result.detail}`;
}

// ---- the node and its chain ----------------------------------------------------------------

async function connect() {
  const [health, doc] = await Promise.all([getPublic("/healthz"), getPublic("/v1/genesis")]);
  const hash = await genesisHash(doc);
  if (keep.genesis_hash && keep.genesis_hash !== hash) {
    notice("other_chain", t("other_chain", { got: hash.slice(0, 12), pinned: keep.genesis_hash.slice(0, 12) }));
    return false;
  }
  genesis = doc;
  node = { node_id: health.node_id, height: health.height };
  node.genesis_hash = hash;
  notice("offline", null);
  showNode();
  return true;
}

function showNode() {
  if (node) $("node").textContent = `${t("node", { node: node.node_id })} · ${genesis.chain_id} · ${node.genesis_hash.slice(0, 12)}`;
}

// Compares this node's head with the other validators' (their APIs are in the genesis).
async function checkBehind() {
  const head = await getPublic("/v1/chain/head");
  const others = genesis.validators.filter((v) => v.id !== node.node_id && /^https?:\/\//.test(v.api ?? ""));
  const heights = (await Promise.allSettled(others.map((v) => peerHead(v.api))))
    .filter((r) => r.status === "fulfilled" && r.value.genesis_hash === keep.genesis_hash).map((r) => r.value.height);
  const best = Math.max(head.height, ...heights);
  notice("behind", best - head.height >= BEHIND_BLOCKS
    ? t("behind", { n: best - head.height, mine: head.height, theirs: best }) : null);
}

// ---- binding -------------------------------------------------------------------------------

async function bind(event) {
  event.preventDefault();
  const status = $("bind-status");
  const walletId = $("wallet-id").value.trim();
  const code = normaliseCode($("binding-code").value);
  if (!ID_RE.test(walletId)) { status.textContent = t("bad_wallet"); return; }
  if (!code) { status.textContent = t("bad_code"); return; }
  $("bind").disabled = true;
  try {
    const hash = await genesisHash(genesis);  // pinned from now on: another chain is refused
    const tx = await bindTx(walletId, code, keep.public_key, hash);
    await getPublic("/v1/driver/bind", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ tx: toHex(tx) }) });
    status.textContent = t("binding_sent");
    const trial = { ...keep, wallet_id: walletId, node_id: node.node_id };
    const deadline = Date.now() + BIND_WAIT_MS;
    // the wallet answers a request signed with the new key once the bind is in a block
    for (;;) {
      try {
        await signedRequest(trial, "GET", `/v1/wallets/${walletId}`);
        break;
      } catch (e) {
        if (!(e instanceof NodeError) || e.status !== 401 || Date.now() > deadline) {
          if (e instanceof NodeError && e.status === 401) { status.textContent = t("bind_timeout"); return; }
          throw e;
        }
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
    keep = { ...trial, genesis_hash: hash };
    saveKeep(keep);
    status.textContent = t("bound", { wallet: walletId });
    showWallet();
  } catch (e) {
    reportError(e, status);
  } finally {
    $("bind").disabled = false;
  }
}

// ---- the wallet ----------------------------------------------------------------------------

async function refreshBalance() {
  const key = `w/${keep.wallet_id}`;
  const answer = await signedRequest(keep, "GET", `/v1/state/proof?key=${encodeURIComponent(key)}`);
  const result = await verifyStateAnswer(answer, genesis, key);
  if (result.ok && (result.value === null || !Number.isSafeInteger(result.value.balance_fen))) {
    Object.assign(result, { ok: false, reason: "bad_record", detail: "the wallet record has no balance" });
  }
  mark($("balance-mark"), result);
  const card = $("balance-card");
  card.dataset.verified = String(result.ok);
  if (!result.ok) { $("balance").textContent = "–"; return null; }
  card.dataset.fen = String(result.value.balance_fen);
  card.dataset.height = String(result.header.height);
  $("balance").textContent = yuan(result.value.balance_fen);
  $("balance-mark").textContent += ` · ${t("at_height", { height: result.header.height })}`;
  return result.value.balance_fen;
}

async function refreshHolds() {
  const view = await signedRequest(keep, "GET", `/v1/wallets/${keep.wallet_id}/authorizations`);
  $("available").textContent = yuan(view.available_fen);
  $("held").textContent = yuan(view.held_fen);
  $("holds").replaceChildren(...(view.holds.length ? view.holds.map((h) => el("li", {},
    t("hold_line", { charger: h.charger_id, amount: yuan(h.amount_fen), until: when(h.expires) })))
    : [el("li", { class: "muted" }, t("no_holds"))]));
  const started = $("start-status").dataset.started;
  if (started && !startCharger() && !view.holds.some((h) => h.charger_id === started)
      && !view.pending_starts.some((s) => s.charger_id === started)) {
    $("start").hidden = true;  // neither waiting at the charger nor charging: the bill says the rest
    delete $("start-status").dataset.started;
  }
  return view;
}

// The tariff version a receipt names: its chain record t/<id>/<version> proven by a state proof,
// and the document whose digest the record holds.
// The next version's record shows whether this one was still in force at a session's start.
async function tariffEvidence(tariffId, version) {
  const name = `${tariffId}/${version}`;
  if (tariffs.has(name)) return tariffs.get(name);
  const key = `t/${name}`;
  const nextKey = `t/${tariffId}/${version + 1}`;
  const proof = (k) => signedRequest(keep, "GET", `/v1/state/proof?key=${encodeURIComponent(k)}`);
  const [answer, nextAnswer, doc] = await Promise.all([
    proof(key), proof(nextKey), getPublic(`/v1/tariffs/${encodeURIComponent(tariffId)}/${version}`)]);
  let proven = await verifyStateAnswer(answer, genesis, key);
  const next = proven.ok ? await verifyStateAnswer(nextAnswer, genesis, nextKey) : null;
  if (next && !next.ok) proven = next;
  const evidence = { doc, proven, next: next && next.ok ? next.value : null };
  // kept once a later version exists: until then one may be published that takes over from a
  // later session's start
  if (proven.ok && evidence.next) tariffs.set(name, evidence);
  return evidence;
}

async function verifyBill(chargerId, seq) {
  const proof = await signedRequest(keep, "GET", `/v1/receipts/${encodeURIComponent(chargerId)}/${seq}/proof`);
  let result = await verifyReceiptProof(proof, genesis);
  if (result.ok && result.receipt.wallet_id !== keep.wallet_id) {
    result = { ok: false, reason: "not_your_wallet", detail: `the receipt bills ${result.receipt.wallet_id}` };
  }
  if (!result.ok) return result;
  const { receipt } = result;
  const { doc, proven, next } = await tariffEvidence(receipt.tariff_id, receipt.tariff_version);
  const amount = proven.ok ? await verifyAmount(receipt, doc, proven.value, next) : proven;
  return amount.ok ? { ...result, tariff: doc, amount } : { ...amount, receipt };
}

// An OCPP charge point's bill: the bill signed by the bureau that served it, its amount the
// tariff's price of the periods its readings give, and who vouches for the readings: the meter's
// own OCMF signature, or that bureau alone (shown as a different mark).
async function verifyOcppBill(txHash) {
  const proof = await signedRequest(keep, "GET", `/v1/ocpp/bills/${txHash}/proof`);
  let result = await verifyOcppBillProof(proof, genesis);
  if (result.ok && result.bill.wallet_id !== keep.wallet_id) {
    result = { ok: false, reason: "not_your_wallet", detail: `the bill is of ${result.bill.wallet_id}` };
  }
  if (!result.ok) return result;
  const { bill } = result;
  const { doc, proven, next } = await tariffEvidence(bill.tariff_id, bill.tariff_version);
  let amount = proven.ok ? await verifyAmount(bill, doc, proven.value, next) : proven;
  if (amount.ok && JSON.stringify(periodsOf(doc, bill.readings)) !== JSON.stringify(bill.periods)) {
    amount = { ok: false, reason: "period_mismatch", detail: "the periods are not what the readings give" };
  }
  return amount.ok ? { ...result, tariff: doc, amount } : { ...amount, bill };
}

function ocppMark(target, bill) {
  mark(target, bill);
  if (!bill.ok) return;
  target.dataset.level = bill.level;
  target.textContent += " · " + (bill.level === "ocmf" ? t("meter_signed") : t("bureau_attested", { bureau: bill.bureau }));
}

function ocppBillCard(entry, bill) {
  const card = el("li", { class: "bill ocpp", "data-charger": entry.charger_id, "data-tx": entry.tx_hash,
    "data-verified": String(bill.ok) });
  const b = bill.bill, status = el("div", { class: "mark" });
  ocppMark(status, bill);
  if (!b) {
    card.append(el("header", {}, el("strong", {}, entry.charger_id)), status);
    return card;
  }
  card.dataset.amountFen = String(b.amount_fen);
  card.dataset.energyWh = String(b.energy_wh);
  if (bill.level) card.dataset.level = bill.level;
  card.append(
    el("header", {}, el("strong", {}, b.charger_id), el("span", { class: "amount" }, yuan(b.amount_fen))),
    el("div", { class: "meta" }, ...parts(span(b.start_time, b.end_time), kwh(b.energy_wh), `OCPP ${b.ocpp}`,
      t("ocpp_transaction", { id: b.transaction_id }), ...(bill.header ? [t("block", { height: bill.header.height })] : []))));
  card.append(status);
  return card;
}

function billCard(entry, bill) {
  const card = el("li", { class: "bill", "data-charger": entry.charger_id, "data-seq": String(entry.seq),
    "data-verified": String(bill.ok) });
  const r = bill.receipt;
  const status = el("div", { class: "mark" });
  mark(status, bill);
  if (!r) {
    card.append(el("header", {}, el("strong", {}, `${entry.charger_id} · ${t("seq", { seq: entry.seq })}`)), status);
    return card;
  }
  card.dataset.amountFen = String(r.amount_fen);
  card.dataset.energyWh = String(r.energy_wh);
  if (bill.header) card.dataset.height = String(bill.header.height);
  card.append(
    el("header", {}, el("strong", {}, r.charger_id), el("span", { class: "amount" }, yuan(r.amount_fen))),
    el("div", { class: "meta" }, ...parts(span(r.start_time, r.end_time), kwh(r.energy_wh), t("stop" + r.stop_reason),
      t("seq", { seq: r.seq }), ...(bill.header ? [t("block", { height: bill.header.height })] : []))));
  if (bill.ok) {
    const rates = bill.amount.rates;
    const rows = r.periods.map(([kind, wh]) => el("tr", { "data-kind": String(kind), "data-wh": String(wh) },
      el("td", {}, t("kind" + kind)), el("td", {}, kwh(wh)),
      el("td", {}, `¥${(Number(rates[kind]) / 10000).toFixed(4)}`),
      el("td", {}, yuan((BigInt(wh) * rates[kind] + 50000n) / 100000n))));
    card.append(el("table", { class: "periods" },
      el("thead", {}, el("tr", {}, ...["period", "energy", "price", "subtotal"].map((k) => el("th", {}, t(k))))),
      el("tbody", {}, ...rows)));
    const since = bill.amount.effective_from
      ? t("tariff_in_force", { id: r.tariff_id, version: r.tariff_version, from: when(bill.amount.effective_from) })
      : t("tariff_from_genesis", { id: r.tariff_id, version: r.tariff_version });
    card.append(el("div", { class: "meta tariff", "data-tariff": `${r.tariff_id}/${r.tariff_version}`,
      "data-effective-from": String(bill.amount.effective_from) },
    since));
  }
  card.append(status);
  return card;
}

async function refreshSessions() {
  const page = await signedRequest(keep, "GET", `/v1/wallets/${keep.wallet_id}/history?limit=50`);
  const charges = page.entries.filter((e) => e.charger_id && (e.seq || e.kind === "ocpp_bill"));
  const cards = [];
  for (const entry of charges) {
    if (entry.kind === "ocpp_bill") {
      const bill = bills.get(entry.tx_hash) ?? await verifyOcppBill(entry.tx_hash);
      if (bill.ok) bills.set(entry.tx_hash, bill);
      cards.push(ocppBillCard(entry, bill));
      continue;
    }
    const name = `${entry.charger_id}#${entry.seq}`;
    if (!bills.has(name)) {
      const bill = await verifyBill(entry.charger_id, entry.seq);
      if (bill.ok) bills.set(name, bill);  // a failed check is tried again at the next refresh
      cards.push(billCard(entry, bill));
    } else {
      cards.push(billCard(entry, bills.get(name)));
    }
  }
  $("sessions").replaceChildren(...(cards.length ? cards : [el("li", { class: "muted" }, t("no_sessions"))]));
  $("sessions").dataset.count = String(cards.length);
}

// Holds live on the one bureau that answers chargers' authorizations; another says which one.
function holdsNotShown(e) {
  if (!(e instanceof NodeError) || e.reason !== "not_served_here") { reportError(e, $("holds")); return; }
  $("holds").replaceChildren(el("li", { class: "muted", "data-reason": e.reason }, t("holds_elsewhere", { detail: e.message })));
}

let refreshing = null;
async function refresh() {
  // one refresh at a time; a timer tick during a slow one waits for the next
  refreshing ??= (async () => {
    try {
      if (!genesis && !await connect()) return;
      await refreshBalance();
      await refreshHolds().catch(holdsNotShown);
      await refreshSessions();
      notice("refused", null);
      await checkBehind();
    } catch (e) {
      reportError(e);
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

function showWallet() {
  $("setup").hidden = true;
  $("wallet").hidden = false;
  $("about").replaceChildren(...parts(`${t("phone_key")} ${keep.public_key.slice(0, 16)}…`, keep.wallet_id,
    t("key_backend", { backend: document.body.dataset.ed25519 })));
  refresh();
  handleDeepLink();
}

// ---- start from a charger's QR code ----------------------------------------------------------

function startCharger() {
  const m = /^#start=([A-Za-z0-9._-]{1,32})$/.exec(location.hash);
  return m ? m[1] : null;
}

function handleDeepLink() {
  const charger = startCharger();
  $("start").hidden = !charger;
  if (!charger) return;
  $("start-title").textContent = t("start_title", { charger });
  $("start-form").hidden = !keep.wallet_id;
  $("start-status").textContent = keep.wallet_id ? "" : t("start_unbound", { charger });
  if (!$("cap").value) $("cap").value = "50.00";
}

function capFen(text) {
  const m = /^(\d{1,6})(?:[.,](\d{1,2}))?$/.exec(text.trim());
  if (!m) return null;
  const fen = Number(m[1]) * 100 + Number((m[2] ?? "").padEnd(2, "0"));
  return fen >= 100 && fen <= MAX_CAP_FEN ? fen : null;
}

async function confirmStart(event) {
  event.preventDefault();
  const charger = startCharger(), status = $("start-status");
  const cap = capFen($("cap").value);
  if (cap === null) { status.textContent = t("bad_cap", { max: (MAX_CAP_FEN / 100).toFixed(2) }); return; }
  $("start-confirm").disabled = true;
  try {
    const q = new URLSearchParams({ charger_id: charger, cap_fen: String(cap) });
    await signedRequest(keep, "POST", `/v1/wallets/${keep.wallet_id}/start?${q}`);
    status.textContent = t("start_sent");
    status.dataset.started = charger;
    $("start-form").hidden = true;
    history.replaceState(null, "", location.pathname);  // a reload must not start again
    refresh();
  } catch (e) {
    reportError(e, status);
  } finally {
    $("start-confirm").disabled = false;
  }
}

// ---- start ---------------------------------------------------------------------------------

async function main() {
  setLang(pickLang(keep.lang));
  $("lang").addEventListener("click", () => {
    keep = { ...keep, lang: currentLang() === "zh" ? "en" : "zh" };
    saveKeep(keep);
    setLang(keep.lang);
    showNode();
    if (keep.wallet_id && genesis) showWallet();
    if (startCharger()) handleDeepLink();
  });
  $("bind-form").addEventListener("submit", bind);
  $("start-form").addEventListener("submit", confirmStart);
  $("start-cancel").addEventListener("click", () => { history.replaceState(null, "", location.pathname); handleDeepLink(); });
  $("refresh").addEventListener("click", () => refresh());
  window.addEventListener("hashchange", handleDeepLink);
  window.addEventListener("online", () => refresh());
  document.body.dataset.ed25519 = await ed25519Backend();
  if (!keep.seed) { keep = { ...keep, ...await newPhoneKey() }; saveKeep(keep); }  // made once, on this phone
  await boot();
}

async function boot() {
  try {
    if (!await connect()) { $("loading").hidden = true; return; }
  } catch (e) {
    reportError(e);
    $("loading").hidden = true;
    setTimeout(boot, REFRESH_MS);  // try again: the node may be back
    return;
  }
  $("loading").hidden = true;
  if (keep.wallet_id) showWallet();
  else { $("setup").hidden = false; handleDeepLink(); }
  setInterval(() => { if (keep.wallet_id) refresh(); }, REFRESH_MS);
}

main();

// The phone's side of the node API: what it keeps (localStorage), signed requests
// (api/auth.py, EV-Sig), the bind transaction (driver tx kind 3), and refusals and network
// failures told apart so the page can say which it was.
import { canonicalJson, concat, ed25519PublicKey, ed25519Sign, fromHex, sha256, tag16, toHex } from "./verify.js";

const enc = new TextEncoder();
const STORE = "chargeledger.phone.v1";

// ---- what the phone keeps ------------------------------------------------------------------

// {seed: hex (the phone key), public_key, wallet_id, node_id, genesis_hash, lang}
export function loadKeep() {
  try { return JSON.parse(localStorage.getItem(STORE)) ?? {}; } catch (e) { return {}; }
}

export function saveKeep(keep) { localStorage.setItem(STORE, JSON.stringify(keep)); }

const randomHex = (n) => toHex(crypto.getRandomValues(new Uint8Array(n)));

export async function newPhoneKey() {
  const seed = crypto.getRandomValues(new Uint8Array(32));
  return { seed: toHex(seed), public_key: toHex(await ed25519PublicKey(seed)) };
}

// ---- talking to the node -------------------------------------------------------------------

// Why a request did not answer: offline (no network or no node), or refused (the node said no).
export class NodeError extends Error {
  constructor(kind, reason, detail, status) { super(detail); this.kind = kind; this.reason = reason; this.status = status; }
}

async function request(url, init = {}) {
  let resp;
  try {
    resp = await fetch(url, { cache: "no-store", ...init });
  } catch (e) {
    throw new NodeError("offline", navigator.onLine === false ? "offline" : "unreachable", String(e.message || e));
  }
  let body = null;
  try { body = await resp.json(); } catch (e) { /* not JSON: said below */ }
  if (!resp.ok) {
    throw new NodeError("refused", body?.error ?? `http_${resp.status}`, body?.detail ?? resp.statusText, resp.status);
  }
  if (body === null) throw new NodeError("refused", "malformed", "the node's answer is not JSON", resp.status);
  return body;
}

// an unsigned request: public reads, and the bind transaction (signed in itself)
export const getPublic = (path, init) => request(path, init);

// "EV-QUERY/v2\n" node "\n" METHOD "\n" path?query "\n" ts "\n" nonce, signed by the phone key
export async function signedRequest(keep, method, pathQs) {
  const ts = Math.floor(Date.now() / 1000), nonce = randomHex(16);
  const message = enc.encode(`EV-QUERY/v2\n${keep.node_id}\n${method}\n${pathQs}\n${ts}\n${nonce}`);
  const sig = toHex(await ed25519Sign(fromHex(keep.seed), message));
  const auth = `EV-Sig wallet=${keep.wallet_id},node=${keep.node_id},ts=${ts},nonce=${nonce},sig=${sig}`;
  return request(pathQs, { method, headers: { Authorization: auth } });
}

// Another validator's head, straight from it (its /v1/chain/head answers any origin).
export async function peerHead(apiUrl) {
  const u = new URL(apiUrl);
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 4000);
  try {
    return await request(`${location.protocol}//${u.host}/v1/chain/head`, { signal: controller.signal });
  } finally { clearTimeout(timer); }
}

// ---- binding (docs/ledger.md: binding codes, driver transactions) ----------------------------

const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

// Upper case, hyphens and spaces removed, O→0, I/L→1; null unless 16 Crockford characters.
export function normaliseCode(text) {
  const code = text.toUpperCase().replace(/[\s-]/g, "").replace(/O/g, "0").replace(/[IL]/g, "1");
  return code.length === 16 && [...code].every((c) => CROCKFORD.includes(c)) ? code : null;
}

// binding seed = SHA-256("EV-BIND/v1\n" ‖ wallet_id ‖ "\n" ‖ code): the code never leaves the phone
export const bindingSeed = (walletId, code) => sha256(enc.encode(`EV-BIND/v1\n${walletId}\n${code}`));

const DRIVER_TAG = tag16("EV-DRIVER/v1");

// kind 3 ‖ u16 length ‖ canonical JSON ‖ signature by the binding key over the tag ‖ JSON
// (time and nonce are given only by the tests of the shared vectors)
export async function bindTx(walletId, code, phonePublicKey, genesisHash, nowS = Math.floor(Date.now() / 1000),
  nonce = randomHex(16)) {
  const doc = { v: 1, action: "bind_phone", wallet_id: walletId, public_key: phonePublicKey, genesis: genesisHash,
    time: nowS, nonce };
  const json = enc.encode(canonicalJson(doc));
  const sig = await ed25519Sign(await bindingSeed(walletId, code), concat(DRIVER_TAG, json));
  return concat([3, json.length >> 8, json.length & 0xff], json, sig);
}

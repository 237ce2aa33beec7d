// The phone's verifiers: every figure the page shows passes through one of these first. Each
// matches a Python one of the node (named beside it) and is checked against the same vectors
// (tests/vectors/*.json). Pure functions of their inputs, but async where WebCrypto is.
// A check answers {ok: true, ...} or {ok: false, reason: "machine_reason", detail: "human text"}.

const enc = new TextEncoder();

// ---- bytes ----------------------------------------------------------------------------------

export class VerifyError extends Error {
  constructor(reason, detail) { super(detail); this.reason = reason; }
}
const fail = (reason, detail) => { throw new VerifyError(reason, detail); };

export function fromHex(text, length) {
  if (typeof text !== "string" || !/^([0-9a-f]{2})*$/.test(text)) fail("malformed", "not lower-case hex");
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.substr(2 * i, 2), 16);
  if (length !== undefined && out.length !== length) fail("malformed", `expected ${length} bytes of hex`);
  return out;
}

export const toHex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let i = 0;
  for (const p of parts) { out.set(p, i); i += p.length; }
  return out;
}

const equal = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
const utf8 = (text) => enc.encode(text);
// a 16-byte domain tag: the ASCII name zero-padded, so no signature is valid for two purposes
export const tag16 = (name) => concat(utf8(name), new Uint8Array(16 - name.length));

export async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

// ---- Ed25519: WebCrypto where the browser has it, else @noble/ed25519 -----------------------

const PKCS8_SEED_PREFIX = fromHex("302e020100300506032b657004220420"); // RFC 8410 wrapping of a seed
let backend = null;  // a promise of "webcrypto" or "noble"
let noble = null;

async function detectBackend() {
  // Chromium, Firefox and Safari have had Ed25519 in WebCrypto since 2025; older ones do not
  const made = await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]).then(() => true, () => false);
  return made ? "webcrypto" : "noble";
}

async function loadNoble() {
  // loaded only when needed: a browser with WebCrypto Ed25519 never fetches it
  noble ??= await import("/assets/noble-ed25519/index.js");
  return noble;
}

export async function ed25519Backend() {
  backend ??= detectBackend();
  return backend;
}

// Tests check both paths with the same vectors.
export function useEd25519Backend(name) { backend = Promise.resolve(name); }

// Strict verification, like libsodium's (node: bureau/crypto.py): canonical encodings, no
// small-order key; an unusable key or signature is a failed check, never an exception.
export async function ed25519Verify(publicKey, message, signature) {
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  if (await ed25519Backend() === "webcrypto") {
    try {
      const key = await crypto.subtle.importKey("raw", publicKey, { name: "Ed25519" }, false, ["verify"]);
      return await crypto.subtle.verify({ name: "Ed25519" }, key, signature, message);
    } catch (e) { return false; }
  }
  const ed = await loadNoble();
  try { return await ed.verifyAsync(signature, message, publicKey, { zip215: false }); } catch (e) { return false; }
}

export async function ed25519PublicKey(seed) {
  if (await ed25519Backend() === "webcrypto") {
    const key = await crypto.subtle.importKey("pkcs8", concat(PKCS8_SEED_PREFIX, seed), { name: "Ed25519" }, true,
      ["sign"]);
    const jwk = await crypto.subtle.exportKey("jwk", key);
    return base64urlDecode(jwk.x);
  }
  return (await loadNoble()).getPublicKeyAsync(seed);
}

export async function ed25519Sign(seed, message) {
  if (await ed25519Backend() === "webcrypto") {
    const key = await crypto.subtle.importKey("pkcs8", concat(PKCS8_SEED_PREFIX, seed), { name: "Ed25519" }, false,
      ["sign"]);
    return new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, key, message));
  }
  return (await loadNoble()).signAsync(message, seed);
}

function base64urlDecode(text) {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(text.length / 4) * 4, "=");
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

// ---- canonical JSON (ledger/canonical.py: Python's json.dumps, keys sorted, no spaces, ASCII) -

function quote(text) {
  let out = '"';
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    const ch = text[i];
    if (ch === '"' || ch === "\\") out += "\\" + ch;
    else if (c >= 0x20 && c <= 0x7e) out += ch;
    else out += { 8: "\\b", 9: "\\t", 10: "\\n", 12: "\\f", 13: "\\r" }[c] ?? "\\u" + c.toString(16).padStart(4, "0");
  }
  return out + '"';
}

// Python sorts keys by code point; JavaScript's default sort by UTF-16 unit differs above U+FFFF.
const byCodePoint = (a, b) => {
  const x = Array.from(a, (c) => c.codePointAt(0)), y = Array.from(b, (c) => c.codePointAt(0));
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
};

export function canonicalJson(value) {
  if (value === null || typeof value === "boolean") return String(value);
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) fail("malformed", "only integers within 2^53 are in our documents");
    return String(value);
  }
  if (typeof value === "string") return quote(value);
  if (Array.isArray(value)) return "[" + value.map(canonicalJson).join(",") + "]";
  if (typeof value === "object") {
    return "{" + Object.keys(value).sort(byCodePoint).map((k) => quote(k) + ":" + canonicalJson(value[k])).join(",") + "}";
  }
  fail("malformed", `no JSON form for ${typeof value}`);
}

// JSON that must already be canonical, so its signature or hash has one meaning
export function parseCanonical(text) {
  let doc;
  try { doc = JSON.parse(text); } catch (e) { fail("malformed", "not JSON"); }
  if (canonicalJson(doc) !== text) fail("not_canonical", "JSON is not in canonical form");
  return doc;
}

// ---- receipts (receipts/codec.py, docs/receipt-v1.md) ---------------------------------------

const RECEIPT_TAG = tag16("EV-RECEIPT/v1");
const MAX_ENVELOPE = 1024;
const ID_RE = /^[A-Za-z0-9._-]{1,32}$/;
const PRINTABLE_RE = /^[\x20-\x7e]{0,64}$/;

class Reader {
  constructor(bytes) { this.bytes = bytes; this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length); this.pos = 0; }
  take(n) {
    if (this.pos + n > this.bytes.length) fail("malformed", "ends early");
    const out = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  u8() { return this.take(1)[0]; }
  u32() { const p = this.pos; this.take(4); return this.view.getUint32(p); }
  u64() { const p = this.pos; this.take(8); return this.view.getBigUint64(p); }  // BigInt: u64 exceeds 2^53
  text() {
    const raw = this.take(this.u8());
    if (raw.some((b) => b > 0x7f)) fail("malformed", "text field is not ASCII");
    return String.fromCharCode(...raw);
  }
}

// The receipt in an envelope, with its stateless checks: throws VerifyError with the node's reason.
export function decodeReceipt(envelope) {
  if (envelope.length > MAX_ENVELOPE) fail("oversized", `${envelope.length} bytes, limit ${MAX_ENVELOPE}`);
  if (envelope.length <= 64) fail("malformed", "shorter than a signature");
  const body = envelope.subarray(0, envelope.length - 64), signature = envelope.subarray(envelope.length - 64);
  if (body[0] !== 1) fail("unsupported_version", `version ${body[0]}`);
  const rd = new Reader(body);
  const r = { version: rd.u8(), charger_id: rd.text(), seq: rd.u32(), session_id: toHex(rd.take(16)),
    auth_method: rd.u8(), id_token: rd.text(), wallet_id: rd.text(), authorized_fen: rd.u64(), auth_ref: rd.text(),
    start_time: rd.u64(), end_time: rd.u64(), time_flags: rd.u8(), meter_serial: rd.text(),
    meter_start_wh: rd.u64(), meter_end_wh: rd.u64(), meter_status: rd.u8(), stop_reason: String.fromCharCode(rd.u8()),
    tariff_id: rd.text(), tariff_version: rd.u32() };
  const count = rd.u8();
  if (count > 4) fail("malformed", `${count} periods, at most 4`);
  r.periods = [];
  for (let i = 0; i < count; i++) r.periods.push([rd.u8(), rd.u64()]);
  r.amount_fen = rd.u64();
  r.firmware_version = rd.text();
  if (rd.pos !== body.length) fail("malformed", `${body.length - rd.pos} bytes after the last field`);
  checkReceipt(r);
  r.energy_wh = r.meter_end_wh - r.meter_start_wh;
  return { receipt: r, body, signature };
}

function checkReceipt(r) {
  for (const name of ["charger_id", "wallet_id", "meter_serial", "tariff_id", "firmware_version"]) {
    if (!ID_RE.test(r[name])) fail("malformed", `${name} must be 1-32 of A-Z a-z 0-9 . _ -`);
  }
  for (const name of ["id_token", "auth_ref"]) {
    if (!PRINTABLE_RE.test(r[name])) fail("malformed", `${name} must be 0-64 printable ASCII`);
  }
  if (r.seq < 1) fail("malformed", "seq must be 1..2^32-1");
  if (![1, 2, 3].includes(r.auth_method)) fail("malformed", `unknown auth_method ${r.auth_method}`);
  if (r.time_flags & ~0b11) fail("malformed", "time_flags has unknown bits");
  if (r.meter_status & ~0b1111) fail("malformed", "meter_status has unknown bits");
  if (!"LRQUFPT".includes(r.stop_reason)) fail("malformed", `unknown stop_reason ${r.stop_reason}`);
  if (r.tariff_version < 1) fail("malformed", "tariff_version must be >= 1");
  const kinds = r.periods.map(([k]) => k);
  if (kinds.some((k, i) => k > 3 || (i > 0 && k <= kinds[i - 1]))) fail("malformed", "periods must have unique kinds 0-3 in ascending order");
  if (r.start_time > r.end_time) fail("inconsistent", "start_time is after end_time");
  if (r.meter_start_wh > r.meter_end_wh) fail("inconsistent", "meter_start_wh is above meter_end_wh");
  if (r.periods.reduce((s, [, wh]) => s + wh, 0n) !== r.meter_end_wh - r.meter_start_wh) {
    fail("inconsistent", "period energies do not add up to meter_end_wh - meter_start_wh");
  }
}

// The charger's signature covers the tag and the body as signed; the summary fields a node
// sends beside the envelope are never trusted.
export async function verifyReceiptSignature(envelope, chargerPublicKey) {
  const { receipt, body, signature } = decodeReceipt(envelope);
  if (!await ed25519Verify(chargerPublicKey, concat(RECEIPT_TAG, body), signature)) {
    fail("bad_signature", "receipt signature does not verify with the charger's key");
  }
  return receipt;
}

// ---- RFC 6962 Merkle tree (ledger/merkle.py) ------------------------------------------------

export const leafHash = (data) => sha256(concat([0], data));
export const nodeHash = (left, right) => sha256(concat([1], left, right));

// RFC 9162 §2.1.3.2: does the leaf hash sit at index of a tree of size with this root?
export async function verifyInclusion(leaf, index, size, path, root) {
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size) || index < 0 || index >= size) return false;
  let fn = index, sn = size - 1, r = leaf;
  for (const p of path) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = await nodeHash(p, r);
      if (fn % 2 === 0) while (fn !== 0 && fn % 2 === 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
    } else {
      r = await nodeHash(r, p);
    }
    fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
  }
  return sn === 0 && equal(r, root);
}

// ---- block header v1 (ledger/block.py) ------------------------------------------------------

export function decodeHeader(bytes) {
  const rd = new Reader(bytes);
  try {
    const version = rd.u8();
    if (version !== 1) fail("unsupported_version", `header version ${version} is not supported`);
    const h = { version, chain_id: rd.text(), height: rd.u64(), prev_hash: toHex(rd.take(32)), time_ms: rd.u64(),
      tx_root: rd.take(32), state_root: rd.take(32), proposer: rd.text(), tx_count: rd.u32() };
    if (rd.pos !== bytes.length) fail("malformed", "bytes after the header");
    if ([h.chain_id, h.proposer].some((t) => t.length < 1 || t.length > 64)) fail("malformed", "identifier must be 1-64 ASCII bytes");
    if (h.height > BigInt(Number.MAX_SAFE_INTEGER)) fail("malformed", "height beyond what the phone counts");
    h.height = Number(h.height);
    h.time_ms = Number(h.time_ms);
    return h;
  } catch (e) {
    if (e instanceof VerifyError && e.reason === "malformed") fail("bad_header", `header is malformed: ${e.message}`);
    throw e;
  }
}

// ---- commit certificates (ledger/certificate.py) -------------------------------------------

const PRECOMMIT_TAG = tag16("EV-PRECOMMIT/v1");

export function precommitBytes(chainId, height, round, blockHash) {
  const id = utf8(chainId);
  if (id.length < 1 || id.length > 64 || id.some((c) => c < 0x20 || c > 0x7e)) fail("bad_chain_id", "chain id must be 1-64 printable ASCII");
  const hr = new DataView(new ArrayBuffer(12));
  hr.setBigUint64(0, BigInt(height));
  hr.setUint32(8, round);
  return concat(PRECOMMIT_TAG, [id.length], id, new Uint8Array(hr.buffer), blockHash);
}

function decodeCertificate(text) {
  let doc;
  try { doc = parseCanonical(text); } catch (e) { fail("bad_certificate", `not canonical JSON: ${e.message}`); }
  const keys = doc && typeof doc === "object" && !Array.isArray(doc) ? Object.keys(doc).sort().join(",") : "";
  if (keys !== "block_hash,height,round,signatures,v") fail("bad_certificate", "expected exactly the keys v, height, round, block_hash, signatures");
  if (doc.v !== 1) fail("unsupported_version", `certificate version ${doc.v}`);
  if (!Number.isSafeInteger(doc.height) || doc.height < 1 || !Number.isInteger(doc.round) || doc.round < 0 || doc.round > 2 ** 31 - 1) {
    fail("bad_certificate", "height and round must be integers in range");
  }
  const hex = (v, n, what) => { try { return fromHex(v, n); } catch (e) { fail("bad_certificate", `${what} is not ${n} bytes of hex`); } };
  const blockHash = hex(doc.block_hash, 32, "block_hash");
  if (blockHash.every((b) => b === 0)) fail("bad_certificate", "block_hash is nil");
  if (!Array.isArray(doc.signatures) || doc.signatures.length < 1 || doc.signatures.length > 1000) fail("bad_certificate", "signatures must be a list of 1..1000");
  const signatures = doc.signatures.map((s) => {
    if (!s || typeof s !== "object" || Object.keys(s).sort().join(",") !== "signature,validator" || typeof s.validator !== "string") {
      fail("bad_certificate", "each signature is {validator: id, signature: hex}");
    }
    return [s.validator, hex(s.signature, 64, `signature of ${s.validator}`)];
  });
  if (signatures.some(([v], i) => i > 0 && byCodePoint(signatures[i - 1][0], v) >= 0)) {
    fail("bad_certificate", "signers must be in strictly ascending id order, each once");
  }
  return { height: doc.height, round: doc.round, blockHash, signatures };
}

// More than 2/3 of the power of `validators` (default the genesis set; the set in force at the
// height, by followValidatorChanges) precommitted this block in one round.
export async function verifyCertificate(genesis, height, blockHash, certText, validators = genesis.validators) {
  const cert = decodeCertificate(certText);
  if (cert.height !== height || !equal(cert.blockHash, blockHash)) fail("wrong_block", "certificate is for another block");
  const message = precommitBytes(genesis.chain_id, height, cert.round, blockHash);
  const byId = new Map(validators.map((v) => [v.id, v]));
  const total = validators.reduce((s, v) => s + (v.power ?? 1), 0);
  let power = 0;
  for (const [id, signature] of cert.signatures) {
    const v = byId.get(id);
    if (!v) fail("unknown_validator", `${id} is not a validator of ${genesis.chain_id} in the set in force at height ${height}`);
    if (!await ed25519Verify(fromHex(v.public_key, 32), message, signature)) fail("bad_signature", `precommit signature of ${id} does not verify`);
    power += v.power ?? 1;
  }
  if (power < Math.floor(total * 2 / 3) + 1) fail("insufficient_power", `signatures carry ${power} of ${total} voting power, not more than 2/3`);
  return cert;
}

// Header bytes → hash → certificate: a header committed by the set in force at its height
// (`epochs` from followValidatorChanges; default: the genesis set alone).
export async function verifyCertifiedHeader(genesis, encodedHex, certText, epochs = null) {
  const bytes = fromHex(encodedHex);
  const header = decodeHeader(bytes);
  if (header.chain_id !== genesis.chain_id) fail("wrong_chain", `block of chain ${header.chain_id}, not ${genesis.chain_id}`);
  header.hash = await sha256(bytes);
  await verifyCertificate(genesis, header.height, header.hash, certText,
    epochs ? validatorsAt(epochs, header.height) : genesis.validators);
  return header;
}

// ---- validator-set changes (ledger/proof.py follow_validator_changes, docs/consensus.md) ----

export const EFFECT_DELAY = 2;  // decided at height d: in force from d + 2

function validatorsAt(epochs, height) {
  let found = epochs[0];
  for (const e of epochs) if (e.from_height <= height) found = e;
  return found.validators;
}

function epochOfRecord(text, height) {
  let rec;
  try { rec = parseCanonical(text); } catch (e) { fail("bad_change", `the v/set record of block ${height} is not canonical JSON`); }
  if (!sameFields(rec, "from_height,seq,validators") || !Number.isSafeInteger(rec.seq) || !Number.isSafeInteger(rec.from_height)
    || !Array.isArray(rec.validators) || rec.validators.length < 1) fail("bad_change", `the v/set record of block ${height} is malformed`);
  for (const v of rec.validators) {
    if (!sameFields(v, "address,api,id,power,public_key") || typeof v.id !== "string" || !Number.isSafeInteger(v.power) || v.power < 1) {
      fail("bad_change", `a validator of the v/set record of block ${height} is malformed`);
    }
    fromHex(v.public_key, 32);
  }
  return rec;
}

// The validator sets from the genesis through `changes` (a proof's validator_changes, oldest
// first): each change's header certified by the set in force at its height, its v/set record
// proven in that header's state and naming the next set version, in force EFFECT_DELAY later.
export async function followValidatorChanges(genesis, changes) {
  if (!Array.isArray(changes)) fail("bad_change", "validator_changes must be a list");
  const epochs = [{ seq: 0, from_height: 1, validators: genesis.validators }];
  for (const entry of changes) {
    if (!entry || typeof entry !== "object") fail("bad_change", "a validator change is not an object");
    const latest = epochs[epochs.length - 1];
    const header = await verifyCertifiedHeader(genesis, entry.header, entry.certificate, epochs);
    const proof = entry.proof;
    if (entry.height !== header.height || !proof || proof.key !== "v/set" || typeof proof.value !== "string") {
      fail("bad_change", `the change at height ${entry.height} does not prove its v/set record`);
    }
    const checked = await verifyStateProof(header.state_root, proof);
    if (!checked.ok) fail("bad_change", `the v/set record of block ${header.height}: ${checked.detail}`);
    const rec = epochOfRecord(proof.value, header.height);
    if (rec.seq !== latest.seq + 1 || rec.from_height !== header.height + EFFECT_DELAY || header.height < latest.from_height) {
      fail("bad_change", `block ${header.height} does not decide validator set ${latest.seq + 1}`);
    }
    epochs.push({ seq: rec.seq, from_height: rec.from_height, validators: rec.validators });
  }
  return epochs;
}

// ---- tariffs (ledger/tariff.py, docs/tariff.md) --------------------------------------------

export const LOCAL_OFFSET_S = 8 * 3600;

export function tariffRates(doc) {
  if (!doc || doc.v !== 1 || !Array.isArray(doc.prices) || !Array.isArray(doc.schedule)) fail("bad_tariff", "not a tariff document v1");
  const rates = [null, null, null, null];
  doc.prices.forEach(([kind, energy, service], i) => {
    if (!Number.isInteger(kind) || kind < 0 || kind > 3 || (i > 0 && kind <= doc.prices[i - 1][0])) fail("bad_tariff", "price rows need unique kinds 0-3 in ascending order");
    if (!Number.isSafeInteger(energy) || !Number.isSafeInteger(service) || energy < 0 || service < 0) fail("bad_tariff", "prices must be integers >= 0");
    rates[kind] = BigInt(energy + service);
  });
  return rates;
}

// Fen for [kind, Wh] pairs: the exact sum in 1e-7 CNY, rounded half up once.
export function amountFen(doc, periods) {
  const rates = tariffRates(doc);
  let exact = 0n;
  for (const [kind, wh] of periods) {
    const rate = rates[kind];
    if (rate == null) fail("bad_tariff", `tariff ${doc.tariff_id} v${doc.version} has no price for kind ${kind}`);
    exact += BigInt(wh) * rate;
  }
  return (exact + 50000n) / 100000n;
}

export function kindAt(doc, unixS) {
  const minute = Math.floor((((unixS + LOCAL_OFFSET_S) % 86400) + 86400) % 86400 / 60);
  let kind = doc.schedule[0][1];
  for (const [start, k] of doc.schedule) if (start <= minute) kind = k;
  return kind;
}

// ---- state proofs (ledger/stateproof.py, docs/state.md) ------------------------------------

const bit = (path, d) => (path[d >> 3] >> (7 - (d & 7))) & 1;

// a text with a lone surrogate has no UTF-8 form, so no path (TextEncoder would replace it)
const wellFormed = (text) => typeof text === "string" && !/\p{Surrogate}/u.test(text);
const sameFields = (obj, names) => obj !== null && typeof obj === "object" && !Array.isArray(obj)
  && Object.keys(obj).sort().join(",") === names;

export async function verifyStateProof(root, proof) {
  try {
    if (!sameFields(proof, "key,other,siblings,v,value")) fail("bad_proof", "the proof's fields are not v, key, value, siblings, other");
    if (proof.v !== 1) fail("unsupported_version", `proof version ${proof.v} is not 1`);
    if (!wellFormed(proof.key)) fail("bad_proof", "key is not a text");
    if (proof.value !== null && !wellFormed(proof.value)) fail("bad_proof", "value is neither a text nor null");
    if (!Array.isArray(proof.siblings) || proof.siblings.length > 256) fail("bad_proof", "siblings is not a list of at most 256");
    const siblings = proof.siblings.map((s) => fromHex(s, 32));
    const path = await sha256(utf8(proof.key));
    let node;
    if (proof.value !== null) {
      if (proof.other !== null) fail("bad_proof", "a proof of a present key has no other leaf");
      node = await sha256(concat([0], path, await sha256(utf8(proof.value))));
    } else if (proof.other !== null) {
      if (!sameFields(proof.other, "path,value_hash")) fail("bad_proof", "other is not an object of path, value_hash");
      const other = fromHex(proof.other.path, 32);
      if (equal(other, path)) fail("bad_proof", "the other leaf has the key's own path: it would prove the key present");
      for (let d = 0; d < siblings.length; d++) if (bit(other, d) !== bit(path, d)) fail("bad_proof", "the other leaf is not on the key's path");
      node = await sha256(concat([0], other, fromHex(proof.other.value_hash, 32)));
    } else {
      node = new Uint8Array(32);
    }
    for (let d = siblings.length - 1; d >= 0; d--) {
      node = bit(path, d) ? await nodeHash(siblings[d], node) : await nodeHash(node, siblings[d]);
    }
    if (!equal(node, root)) return { ok: false, reason: "wrong_root", detail: "the proof does not lead to the block's state root" };
    return { ok: true };
  } catch (e) {
    if (e instanceof VerifyError) return { ok: false, reason: e.reason, detail: e.message };
    throw e;
  }
}

// ---- what the page shows --------------------------------------------------------------------

// Turns a throwing check into {ok, reason, detail}; anything unexpected in the answer is malformed.
async function outcome(check) {
  try {
    return { ok: true, ...await check() };
  } catch (e) {
    if (e instanceof VerifyError) return { ok: false, reason: e.reason, detail: e.message };
    return { ok: false, reason: "malformed", detail: `the answer is malformed: ${e.message}` };
  }
}

// A bill (GET /v1/receipts/.../proof; ledger/proof.py verify_receipt_proof): the charger's
// signature over the envelope, the header certified by the set in force at its height (followed
// from the genesis through the proof's validator_changes), the RFC 6962 path from the receipt's
// transaction to the header's tx_root.
export function verifyReceiptProof(proof, genesis) {
  return outcome(async () => {
    const envelope = fromHex(proof.receipt.envelope);
    const receipt = await verifyReceiptSignature(envelope, fromHex(proof.charger_public_key, 32));
    const epochs = await followValidatorChanges(genesis, proof.validator_changes ?? []);
    const header = await verifyCertifiedHeader(genesis, proof.header.encoded, proof.certificate, epochs);
    if (proof.tree_size !== header.tx_count) fail("bad_path", "tree size differs from the header's transaction count");
    const leaf = await leafHash(concat([1], envelope));  // a receipt transaction: kind 1 ‖ envelope
    const path = proof.audit_path.map((p) => fromHex(p, 32));
    if (!await verifyInclusion(leaf, proof.leaf_index, header.tx_count, path, header.tx_root)) fail("bad_path", "receipt is not in the block");
    return { receipt, header };
  });
}

// ---- OCPP bills (tx kind 4, ledger/ocppbill.py; ledger/proof.py verify_ocpp_bill_proof) ----

const OCPP_BILL_TAG = tag16("EV-OCPPBILL/v1");

// kind 4 | u16 length | canonical JSON | Ed25519 signature over the tag and the JSON
function splitOcppBill(tx) {
  if (tx.length < 3 + 64 || tx[0] !== 4) fail("malformed", "not an OCPP bill transaction");
  const n = (tx[1] << 8) | tx[2];
  if (tx.length !== 3 + n + 64) fail("malformed", "OCPP bill length does not match");
  const raw = tx.subarray(3, 3 + n);
  let doc;
  try { doc = parseCanonical(new TextDecoder("utf-8", { fatal: true }).decode(raw)); } catch (e) { fail("malformed", `OCPP bill is not canonical JSON: ${e.message}`); }
  if (!doc || doc.v !== 1 || !Array.isArray(doc.readings) || doc.readings.length < 2) fail("malformed", "not an OCPP bill v1");
  return { doc, raw, signature: tx.subarray(3 + n) };
}

// An ECDSA signature as OCMF carries it (DER SEQUENCE of two INTEGERs) as WebCrypto takes it (r ‖ s)
function derToRaw(der) {
  const int = (at) => {
    if (der[at] !== 0x02) fail("malformed", "OCMF signature is not DER");
    const len = der[at + 1];
    let v = der.subarray(at + 2, at + 2 + len);
    while (v.length > 32 && v[0] === 0) v = v.subarray(1);
    if (v.length > 32) fail("malformed", "OCMF signature integer is too long");
    return [concat(new Uint8Array(32 - v.length), v), at + 2 + len];
  };
  if (der[0] !== 0x30 || der[1] !== der.length - 2) fail("malformed", "OCMF signature is not a DER SEQUENCE");
  const [r, next] = int(2);
  const [s2] = int(next);
  return concat(r, s2);
}

// The meter's own signature (ECDSA P-256 over the payload as sent) and its begin and end
// readings in Wh (ledger/ocmf.py verify)
export async function verifyOcmf(record, spkiHex) {
  const first = record.indexOf("|"), last = record.lastIndexOf("|");
  if (record.slice(0, first) !== "OCMF" || last <= first) fail("malformed", "an OCMF record is OCMF|<payload>|<signature>");
  const payload = record.slice(first + 1, last);
  let body, sig;
  try { body = JSON.parse(payload); sig = JSON.parse(record.slice(last + 1)); } catch (e) { fail("malformed", "OCMF payload and signature must be JSON"); }
  if ((sig.SA ?? "ECDSA-secp256r1-SHA256") !== "ECDSA-secp256r1-SHA256") fail("unsupported_algorithm", `OCMF algorithm ${sig.SA}`);
  let key;
  try {
    key = await crypto.subtle.importKey("spki", fromHex(spkiHex), { name: "ECDSA", namedCurve: "P-256" }, false, ["verify"]);
  } catch (e) { fail("malformed", "the meter key is not a P-256 public key"); }
  const ok = await crypto.subtle.verify({ name: "ECDSA", hash: "SHA-256" }, key, derToRaw(fromHex(String(sig.SD))), utf8(payload));
  if (!ok) fail("bad_meter_signature", "the OCMF record does not verify with the meter key enrolled");
  const rd = Array.isArray(body.RD) ? body.RD : [];
  const wh = (r) => Math.round(Number(r.RV) * ({ kWh: 1000, Wh: 1 }[r.RU] ?? NaN));
  const begin = rd.filter((r) => r.TX === "B"), end = rd.filter((r) => "ELRAPST".includes(r.TX ?? "-"));
  if (begin.length !== 1 || end.length !== 1) fail("malformed", "an OCMF record has one begin and one end reading");
  return { begin_wh: wh(begin[0]), end_wh: wh(end[0]) };
}

// An OCPP bill (GET /v1/ocpp/bills/<tx hash>/proof): signed by the validator it names, in a
// certified block; `level` says who vouches for the readings: "ocmf" (the meter's signature
// verified here) or "bureau" (the serving bureau's word alone).
export function verifyOcppBillProof(proof, genesis) {
  return outcome(async () => {
    const tx = fromHex(proof.tx);
    const { doc, raw, signature } = splitOcppBill(tx);
    const epochs = await followValidatorChanges(genesis, proof.validator_changes ?? []);
    const header = await verifyCertifiedHeader(genesis, proof.header.encoded, proof.certificate, epochs);
    // the bill's signer: a validator in force at the block that holds it
    const bureau = validatorsAt(epochs, header.height).find((v) => v.id === doc.bureau);
    if (!bureau) fail("unknown_validator", `${doc.bureau} is not a validator of ${genesis.chain_id} at block ${header.height}`);
    if (!await ed25519Verify(fromHex(bureau.public_key, 32), concat(OCPP_BILL_TAG, raw), signature)) {
      fail("bad_signature", `the bill is not signed by ${doc.bureau}`);
    }
    if (proof.tree_size !== header.tx_count) fail("bad_path", "tree size differs from the header's transaction count");
    const path = proof.audit_path.map((p) => fromHex(p, 32));
    if (!await verifyInclusion(await leafHash(tx), proof.leaf_index, header.tx_count, path, header.tx_root)) fail("bad_path", "the bill is not in the block");
    const start = doc.readings[0][1], end = doc.readings[doc.readings.length - 1][1];
    const bill = { ...doc, amount_fen: BigInt(doc.amount_fen), energy_wh: end - start };  // a receipt's amount is a u64 too
    if (doc.ocmf === null) return { bill, header, level: "bureau", bureau: doc.bureau };
    const signed = await verifyOcmf(doc.ocmf, proof.ocmf_key);
    if (signed.begin_wh !== start || signed.end_wh !== end) fail("meter_mismatch", "the meter signed other readings than the bill's");
    return { bill, header, level: "ocmf", bureau: doc.bureau };
  });
}

// The energy per period kind of [time, Wh] readings: between two readings, the later one's period
// (ledger/ocppbill.py periods_of).
export function periodsOf(tariffDoc, readings) {
  const out = new Map();
  for (let i = 1; i < readings.length; i++) {
    const wh = readings[i][1] - readings[i - 1][1];
    if (wh > 0) { const k = kindAt(tariffDoc, readings[i][0]); out.set(k, (out.get(k) ?? 0) + wh); }
  }
  return [...out.entries()].sort((a, b) => a[0] - b[0]);
}

// A state record (GET /v1/state/proof): the header certified, then the proof to its state_root.
// Answers the record's value parsed (null when the map has no such key).
export function verifyStateAnswer(answer, genesis, key) {
  return outcome(async () => {
    if (answer.key !== key || answer.proof.key !== key) fail("wrong_key", `the answer is for ${answer.key}, not ${key}`);
    if (answer.value !== answer.proof.value) fail("bad_proof", "the value differs from the proven one");
    const epochs = await followValidatorChanges(genesis, answer.validator_changes ?? []);
    const header = await verifyCertifiedHeader(genesis, answer.header.encoded, answer.certificate, epochs);
    if (header.height !== answer.height) fail("wrong_block", "the proof's height differs from its header's");
    const checked = await verifyStateProof(header.state_root, answer.proof);
    if (!checked.ok) fail(checked.reason, checked.detail);
    return { header, value: answer.value === null ? null : parseCanonical(answer.value) };
  });
}

// The amount of a verified receipt recomputed from a tariff document, which must be the one the
// chain's record t/<id>/<version> names by digest (a verified state answer's value); and that
// version in force at the session's start: it began at or before the start, and the next
// version's record (t/<id>/<version + 1>, verified too; null when absent) begins after it
// (ledger/proof.py verify_bill_amount).
export function verifyAmount(receipt, tariffDoc, tariffRecord, nextRecord) {
  return outcome(async () => {
    if (!tariffRecord) fail("unknown_tariff", `tariff ${receipt.tariff_id} v${receipt.tariff_version} is not on the chain`);
    if (tariffRecord.effective_from > receipt.start_time) fail("tariff_not_in_force", `v${receipt.tariff_version} came in force after the session's start`);
    if (nextRecord && nextRecord.effective_from <= receipt.start_time) fail("tariff_not_in_force", `v${receipt.tariff_version + 1} was in force at the session's start`);
    const digest = toHex(await sha256(utf8(canonicalJson(tariffDoc))));
    if (digest !== tariffRecord.digest) fail("wrong_tariff", "the tariff document is not the one the chain names");
    if (tariffDoc.tariff_id !== receipt.tariff_id || tariffDoc.version !== receipt.tariff_version) fail("wrong_tariff", "the tariff document is another version");
    const amount = amountFen(tariffDoc, receipt.periods);
    if (amount !== receipt.amount_fen) fail("wrong_amount", `the tariff gives ${amount} fen, the receipt says ${receipt.amount_fen}`);
    return { amount_fen: amount, rates: tariffRates(tariffDoc), effective_from: tariffRecord.effective_from };
  });
}

// The genesis a node serves, pinned by its hash (ledger/genesis.py: SHA-256 of canonical JSON).
export async function genesisHash(doc) {
  return toHex(await sha256(utf8(canonicalJson(doc))));
}

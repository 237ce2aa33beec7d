# The bureau keys a charger believes (docs/authorization.md, "Trust"): the chain id and the
# validators' public keys of the chain's genesis. The technician's tool writes them to bureau.json
# at provisioning; nothing received over MQTT changes them. Every signed message of the bureau -
# offline list, tariff push, receipt ack, authorization reply - is checked against them here.
import binascii
import json

TRUST_FILE = "bureau.json"


class TrustError(Exception):
    def __init__(self, reason, detail=""):
        super().__init__(reason + (": " + detail if detail else ""))
        self.reason = reason
        self.detail = detail


def trust_from_genesis(genesis):
    """The trust document a charger keeps: the chain id and the bureau validators' keys."""
    keys = {}
    for v in genesis["validators"]:
        key = binascii.unhexlify(v["public_key"])
        if len(key) != 32:
            raise TrustError("malformed", "validator key of %s" % v["id"])
        keys[v["id"]] = v["public_key"]
    if not keys:
        raise TrustError("malformed", "genesis names no validators")
    return {"v": 1, "chain_id": genesis["chain_id"], "keys": keys}


def provision(flash, genesis):
    """Write bureau.json at provisioning (the technician's tool has fetched GET /v1/genesis)."""
    doc = trust_from_genesis(genesis)
    flash.write_atomic(TRUST_FILE, json.dumps(doc).encode())
    return doc


class Trust:
    def __init__(self, chain_id=None, keys=None):
        self.chain_id = chain_id
        self.keys = keys or {}  # validator id -> 32-byte public key

    @property
    def provisioned(self):
        return self.chain_id is not None and bool(self.keys)

    def check(self, verify, signer, message, sig):
        """None when `signer` is a validator of the genesis and `sig` its Ed25519 signature of
        `message` (ed25519.verify), else the reason: not_provisioned, unknown_signer,
        bad_signature."""
        if not self.provisioned:
            return "not_provisioned"
        key = self.keys.get(signer) if isinstance(signer, str) else None
        if key is None:
            return "unknown_signer"
        if not verify(key, message, sig):
            return "bad_signature"
        return None


def load(flash):
    """The Trust in bureau.json; an unprovisioned one (trusting nobody) when there is none."""
    raw = flash.read(TRUST_FILE)
    if not raw:
        return Trust()
    doc = json.loads(raw)
    keys = {}
    for name in doc["keys"]:
        keys[name] = binascii.unhexlify(doc["keys"][name])
    return Trust(doc["chain_id"], keys)

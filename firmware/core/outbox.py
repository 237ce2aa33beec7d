# The flash outbox: every signed receipt stays in flash until a bureau node acknowledges that it
# is committed. One file per receipt (outbox/<seq>), written atomically, removed only by the
# ack that names the same seq and receipt id. Receipts the bureau refuses for good move to
# refused/ for a technician; they are never resent and never deleted silently.
import binascii
import hashlib

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

_DIR = "outbox"
_REFUSED = "refused"
# Refusals that may pass if the same receipt is sent again later: a bureau too busy, or one whose
# ledger has not yet committed this charger's enrollment (a charger may meter a session on its
# offline list before then). Energy already delivered is never set aside for those.
RETRYABLE = ("busy", "internal_error", "unknown_charger")


def _name(seq):
    return "%s/%010d" % (_DIR, seq)


def receipt_id(envelope):
    return binascii.hexlify(hashlib.sha256(envelope).digest()).decode()


class Outbox:
    def __init__(self, flash):
        self.flash = flash
        flash.mkdir(_DIR)
        flash.mkdir(_REFUSED)

    def put(self, seq, envelope):
        self.flash.write_atomic(_name(seq), envelope)

    def has(self, seq):
        return self.flash.read(_name(seq)) is not None

    def pending(self):
        """Seqs waiting for an ack, oldest first."""
        out = []
        for n in self.flash.listdir(_DIR):
            try:
                out.append(int(n))
            except ValueError:
                pass  # a stray file is not a receipt
        out.sort()
        return out

    def get(self, seq):
        return self.flash.read(_name(seq))

    def ack(self, seq, rid):
        """Remove receipt `seq` if `rid` is its id; True when removed."""
        env = self.get(seq)
        if env is None or receipt_id(env) != rid:
            return False
        self.flash.remove(_name(seq))
        return True

    def refuse(self, seq, reason):
        """Move a receipt the bureau refused for good out of the sending queue."""
        if self.get(seq) is None:
            return False
        self.flash.rename(_name(seq), "%s/%010d.%s" % (_REFUSED, seq, reason[:24]))
        return True

    def refused(self):
        return sorted(self.flash.listdir(_REFUSED))

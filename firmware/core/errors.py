# The one shape of an input the firmware refuses: a short machine `reason` (what the bureau,
# the display, the logs and the shared vectors in tests/vectors see) and a human `detail`.
# The bureau's own errors have the same shape (backend/bureau/errors.py). Runs under
# MicroPython and CPython.


class CodecError(ValueError):
    """`reason` a short machine word, `detail` human text, `code` the protocol's own error
    code when the other side sent one (a Modbus exception code, a DL/T 645 error byte)."""

    def __init__(self, reason, detail="", code=None):
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail
        self.code = code

    def __str__(self):
        if self.detail:
            return "%s: %s" % (self.reason, self.detail)
        return self.reason

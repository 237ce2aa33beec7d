# A fake of MicroPython's `network` for the unix port: the access point is the hardware bench's
# (tests/device/bench.py), which the test switches on and off.
import benchlink

STA_IF = 0
AP_IF = 1
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_NO_AP_FOUND = 201


class WLAN:
    def __init__(self, interface=STA_IF):
        self.interface = interface
        self._active = False

    def active(self, v=None):
        if v is None:
            return self._active
        self._active = bool(v)

    def connect(self, ssid, key=None):
        if not self._active:
            raise OSError("WLAN not active")
        benchlink.tell("wifi connect %s" % ssid)

    def disconnect(self):
        benchlink.tell("wifi disconnect")

    def isconnected(self):
        return benchlink.ask("wifi?") == "1"

    def status(self, *a):
        return STAT_GOT_IP if self.isconnected() else STAT_NO_AP_FOUND

    def ifconfig(self, *a):
        return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")

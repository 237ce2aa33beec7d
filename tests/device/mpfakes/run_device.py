# Boot the charger application as the ESP32 does: run the flash's main.py (the unix port's
# current directory is the flash: main.py, board.json, config.json, meter.json, data/). The
# fakes of machine/network/ntptime stand in for the port's own modules, and the device's socket
# module is one whose resolver is the bench's DNS (the resolver the Wi-Fi network hands out).
import sys

import benchsocket

sys.modules["socket"] = benchsocket
with open("main.py") as f:
    source = f.read()
exec(compile(source, "main.py", "exec"), {"__name__": "__main__"})

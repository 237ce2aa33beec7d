# Freeze manifest of the charger firmware: every module of core/, drivers/ and shell/ under its
# bare name (flat, as in the device's /lib) plus the device's board.py, uart_transport.py and
# app.py (the application). main.py stays a file on the device (what a technician edits and
# replaces): two lines that import app and run it.
#
# Frozen modules keep their bytecode and constant bytes/str in flash, so the heap holds only
# what runs at import; the Ed25519 comb table (core/ed25519_table.py) is such a constant.
# Port-neutral: the ESP32 image includes this beside the port's own manifest (`just
# firmware-build` writes that wrapper and prints the build command); the heap tests freeze it
# into the 32-bit unix port (build.sh --32 --frozen).
freeze("core")
freeze("drivers")
freeze("shell")
module("board.py", base_path="device")
module("uart_transport.py", base_path="device")
module("app.py", base_path="device")

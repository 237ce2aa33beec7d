# Freeze manifest of the unix-port image the device tests and the heap budget run: the
# charger firmware (firmware/manifest.py) plus the fakes of the ESP32 port's own modules
# (machine, network, ntptime) and the link to the hardware bench. On the ESP32 those modules
# are C in flash and take no heap; frozen here, their bytecode stays out of the heap as well,
# so the heap the tests measure is the firmware's. run_device.py (the boot) stays a file.
include("../../../firmware/manifest.py")
module("machine.py")
module("network.py")
module("ntptime.py")
module("benchlink.py")
module("benchsocket.py")

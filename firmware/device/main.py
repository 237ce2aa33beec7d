# The charger application on the ESP32: MicroPython runs this file after boot. The application
# is the frozen module app (firmware/device/app.py, compiled into the image so its code stays
# in flash); this file stays on the device's filesystem, where a technician can replace it.
import app

app.run()

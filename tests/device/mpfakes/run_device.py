# Boot the charger application as the ESP32's main.py does (app.run()), with the unix port's current
# directory as the flash root (board.json, config.json, meter.json, data/) and the bench's
# resolver behind the socket module.
import gc

import app as app_mod
import benchsocket

app = app_mod.App.from_files("", socket_mod=benchsocket)
gc.collect()
print("boot: heap free %d" % gc.mem_free())
app.start().run_forever()

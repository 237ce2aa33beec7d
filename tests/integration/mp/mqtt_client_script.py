# The firmware's MQTT client under the MicroPython unix port against a real mosquitto, driven
# from tests/integration/test_mqtt_client_unix.py: argv port user password. Prints one line per
# milestone; the CPython test plays the bureau and restarts the broker.
import sys
import time

from mqtt_client import CONNECTED_EVENT, DISCONNECTED_EVENT, MESSAGE, PUBLISHED, SUBSCRIBED, MQTTClient

port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
base = "ev/v1/charger/%s/" % user
c = MQTTClient("127.0.0.1", port, client_id=user, keepalive=5, clean_session=False, username=user,
               password=password, will=(base + "status", b"offline", 1, True), reconnect_min_ms=50,
               reconnect_max_ms=400)
c.subscribe(base + "reply", 1)
c.connect()
seen = []


def wait(pred, what, ms=20000):
    t0 = time.ticks_ms()
    while time.ticks_diff(time.ticks_ms(), t0) < ms:
        for ev in c.poll(wait_ms=20):
            seen.append(ev)
            if ev[0] == MESSAGE:
                print("message %s %s qos=%d" % (ev[1], ev[2].decode(), ev[3]))
            elif ev[0] in (CONNECTED_EVENT, DISCONNECTED_EVENT, SUBSCRIBED):
                print("%s %s" % (ev[0], ev[1]))
        if pred():
            return
    print("timeout waiting for " + what)
    sys.exit(1)


def count(kind):
    return len([e for e in seen if e[0] == kind])


wait(lambda: count(SUBSCRIBED) == 1, "SUBACK")
pid = c.publish(base + "status", b"online", 1, True)
wait(lambda: (PUBLISHED, pid) in seen, "PUBACK")
print("puback %d" % pid)
wait(lambda: count(MESSAGE) == 1, "the bureau's message")
wait(lambda: count(DISCONNECTED_EVENT) == 1, "the broker to go")
wait(lambda: count(CONNECTED_EVENT) == 2 and count(SUBSCRIBED) == 2, "the reconnection", 30000)
pid = c.publish(base + "status", b"back", 1, True)
wait(lambda: (PUBLISHED, pid) in seen, "PUBACK after the restart")
print("puback %d" % pid)
wait(lambda: count(MESSAGE) == 2, "the second message")
print("done")
while True:  # stays connected until the test cuts the power
    c.poll(wait_ms=100)

# The firmware's MQTT client over TLS under the MicroPython unix port against a real mosquitto,
# driven from tests/integration/test_mqtt_client_tls_unix.py: argv port user password ca_file
# (ca_file "-": plain TCP, for the heap comparison). Prints one line per milestone and the heap
# free (gc.mem_free after a collection) before the client, with it, and with the connection up.
import gc
import sys
import time

import broker_tls
from mqtt_client import CONNECT_FAILED, CONNECTED_EVENT, MESSAGE, PUBLISHED, SUBSCRIBED, MQTTClient

port, user, password, ca_file = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
base = "ev/v1/charger/%s/" % user


def free():
    gc.collect()
    return gc.mem_free()


ctx = None
free_start = free()
if ca_file != "-":
    ctx = broker_tls.make_context(broker_tls.load_ca(ca_file))
free_ctx = free()
c = MQTTClient("127.0.0.1", port, client_id=user, keepalive=30, username=user, password=password,
               tls=ctx, auto_reconnect=False)
c.subscribe(base + "reply", 1)
free_client = free()
c.connect()
seen = []


def wait(pred, what, ms=20000):
    t0 = time.ticks_ms()
    while time.ticks_diff(time.ticks_ms(), t0) < ms:
        for ev in c.poll(wait_ms=20):
            seen.append(ev)
            if ev[0] == CONNECT_FAILED:
                print("refused %s (%s)" % (ev[1], c.last_detail))
                sys.exit(0)
            if ev[0] == MESSAGE:
                print("message %s %s qos=%d" % (ev[1], ev[2].decode(), ev[3]))
            elif ev[0] in (CONNECTED_EVENT, SUBSCRIBED):
                print("%s %s" % (ev[0], ev[1]))
        if pred():
            return
    print("timeout waiting for " + what)
    sys.exit(1)


wait(lambda: [e for e in seen if e[0] == SUBSCRIBED], "SUBACK")
free_connected = free()
pid = c.publish(base + "status", b"online", 1, True)
wait(lambda: (PUBLISHED, pid) in seen, "PUBACK")
print("puback %d" % pid)
wait(lambda: [e for e in seen if e[0] == MESSAGE], "the bureau's message")
free_traffic = free()
print("heap start %d context %d client %d connected %d traffic %d" % (
    free_start, free_ctx, free_client, free_connected, free_traffic))
print(c.close())
print("done")

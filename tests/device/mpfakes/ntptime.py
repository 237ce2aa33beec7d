# A fake of micropython-lib's `ntptime`: the bench's time server answers or times out. The unix
# port's clock is the host's (UTC already), so a sync changes nothing but the clock's sync mark.
import benchlink

host = "pool.ntp.org"
timeout = 1


def settime():
    if benchlink.ask("ntp %s" % host) != "ok":
        raise OSError(110)  # ETIMEDOUT, as ntptime raises when no answer comes

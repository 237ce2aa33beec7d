# Millisecond ticks that wrap, as MicroPython's `time.ticks_ms()` does at 2**30 on the ESP32:
# differences and sums go through these, which take them modulo 2**30 like `time.ticks_diff`
# and `time.ticks_add`, so ticks from any module can be compared. Pure; the counter itself is
# clock.ticks_source().

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

_TICKS_HALF = const(0x20000000)


# Both stay within MicroPython's small ints (-2**30 .. 2**30-1) at every step, so they never
# allocate: 2**30 itself is not a small int on a 32-bit port, hence the two half steps.

def ticks_diff(a: int, b: int) -> int:
    """a - b in ms for counters that wrap at 2**30 (the rule of time.ticks_diff); a and b
    are ticks in 0 .. 2**30-1."""
    d = a - b
    if d >= _TICKS_HALF:
        return d - _TICKS_HALF - _TICKS_HALF
    if d < -_TICKS_HALF:
        return d + _TICKS_HALF + _TICKS_HALF
    return d


def ticks_add(t: int, delta: int) -> int:
    """t + delta on the same wrapping counter; |delta| < 2**29."""
    if delta >= 0:
        if t >= _TICKS_HALF:
            t = t - _TICKS_HALF - _TICKS_HALF  # t - 2**30, negative
        t += delta
        return t if t >= 0 else t + _TICKS_HALF + _TICKS_HALF
    t += delta
    return t if t >= 0 else t + _TICKS_HALF + _TICKS_HALF

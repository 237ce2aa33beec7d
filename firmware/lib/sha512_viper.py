"""SHA-512 compression in viper (machine code, 32-bit words, no allocation): the fast path of
sha512.py where the port has a native emitter (x86 and x64 on the unix port, xtensawin on the
ESP32). Each 64-bit word is a (high, low) pair of 32-bit halves; every sum and left shift is
masked to 32 bits, so the same code is right where viper's words are 64 bits wide (x64).

The WebAssembly port and CPython cannot compile this module (no native emitter, no
`micropython` module): sha512.py then uses its pure-Python compression.

    compress(state, buf, off)  state: bytearray(64), 8 words as 16 halves (high first) in
                               native order; buf[off:off + 128] the block (any buffer)
    load_be(state, src)        state from 64 big-endian bytes (the IV, a digest)
    store_be(state, out)       64 big-endian bytes of state into out (bytearray(64))
"""

import micropython

# FIPS 180-4 round constants K[0..79], big-endian: a bytes constant, kept in flash when frozen
_K = (
    b"\x42\x8a\x2f\x98\xd7\x28\xae\x22\x71\x37\x44\x91\x23\xef\x65\xcd\xb5\xc0\xfb\xcf\xec\x4d\x3b\x2f"
    b"\xe9\xb5\xdb\xa5\x81\x89\xdb\xbc\x39\x56\xc2\x5b\xf3\x48\xb5\x38\x59\xf1\x11\xf1\xb6\x05\xd0\x19"
    b"\x92\x3f\x82\xa4\xaf\x19\x4f\x9b\xab\x1c\x5e\xd5\xda\x6d\x81\x18\xd8\x07\xaa\x98\xa3\x03\x02\x42"
    b"\x12\x83\x5b\x01\x45\x70\x6f\xbe\x24\x31\x85\xbe\x4e\xe4\xb2\x8c\x55\x0c\x7d\xc3\xd5\xff\xb4\xe2"
    b"\x72\xbe\x5d\x74\xf2\x7b\x89\x6f\x80\xde\xb1\xfe\x3b\x16\x96\xb1\x9b\xdc\x06\xa7\x25\xc7\x12\x35"
    b"\xc1\x9b\xf1\x74\xcf\x69\x26\x94\xe4\x9b\x69\xc1\x9e\xf1\x4a\xd2\xef\xbe\x47\x86\x38\x4f\x25\xe3"
    b"\x0f\xc1\x9d\xc6\x8b\x8c\xd5\xb5\x24\x0c\xa1\xcc\x77\xac\x9c\x65\x2d\xe9\x2c\x6f\x59\x2b\x02\x75"
    b"\x4a\x74\x84\xaa\x6e\xa6\xe4\x83\x5c\xb0\xa9\xdc\xbd\x41\xfb\xd4\x76\xf9\x88\xda\x83\x11\x53\xb5"
    b"\x98\x3e\x51\x52\xee\x66\xdf\xab\xa8\x31\xc6\x6d\x2d\xb4\x32\x10\xb0\x03\x27\xc8\x98\xfb\x21\x3f"
    b"\xbf\x59\x7f\xc7\xbe\xef\x0e\xe4\xc6\xe0\x0b\xf3\x3d\xa8\x8f\xc2\xd5\xa7\x91\x47\x93\x0a\xa7\x25"
    b"\x06\xca\x63\x51\xe0\x03\x82\x6f\x14\x29\x29\x67\x0a\x0e\x6e\x70\x27\xb7\x0a\x85\x46\xd2\x2f\xfc"
    b"\x2e\x1b\x21\x38\x5c\x26\xc9\x26\x4d\x2c\x6d\xfc\x5a\xc4\x2a\xed\x53\x38\x0d\x13\x9d\x95\xb3\xdf"
    b"\x65\x0a\x73\x54\x8b\xaf\x63\xde\x76\x6a\x0a\xbb\x3c\x77\xb2\xa8\x81\xc2\xc9\x2e\x47\xed\xae\xe6"
    b"\x92\x72\x2c\x85\x14\x82\x35\x3b\xa2\xbf\xe8\xa1\x4c\xf1\x03\x64\xa8\x1a\x66\x4b\xbc\x42\x30\x01"
    b"\xc2\x4b\x8b\x70\xd0\xf8\x97\x91\xc7\x6c\x51\xa3\x06\x54\xbe\x30\xd1\x92\xe8\x19\xd6\xef\x52\x18"
    b"\xd6\x99\x06\x24\x55\x65\xa9\x10\xf4\x0e\x35\x85\x57\x71\x20\x2a\x10\x6a\xa0\x70\x32\xbb\xd1\xb8"
    b"\x19\xa4\xc1\x16\xb8\xd2\xd0\xc8\x1e\x37\x6c\x08\x51\x41\xab\x53\x27\x48\x77\x4c\xdf\x8e\xeb\x99"
    b"\x34\xb0\xbc\xb5\xe1\x9b\x48\xa8\x39\x1c\x0c\xb3\xc5\xc9\x5a\x63\x4e\xd8\xaa\x4a\xe3\x41\x8a\xcb"
    b"\x5b\x9c\xca\x4f\x77\x63\xe3\x73\x68\x2e\x6f\xf3\xd6\xb2\xb8\xa3\x74\x8f\x82\xee\x5d\xef\xb2\xfc"
    b"\x78\xa5\x63\x6f\x43\x17\x2f\x60\x84\xc8\x78\x14\xa1\xf0\xab\x72\x8c\xc7\x02\x08\x1a\x64\x39\xec"
    b"\x90\xbe\xff\xfa\x23\x63\x1e\x28\xa4\x50\x6c\xeb\xde\x82\xbd\xe9\xbe\xf9\xa3\xf7\xb2\xc6\x79\x15"
    b"\xc6\x71\x78\xf2\xe3\x72\x53\x2b\xca\x27\x3e\xce\xea\x26\x61\x9c\xd1\x86\xb8\xc7\x21\xc0\xc2\x07"
    b"\xea\xda\x7d\xd6\xcd\xe0\xeb\x1e\xf5\x7d\x4f\x7f\xee\x6e\xd1\x78\x06\xf0\x67\xaa\x72\x17\x6f\xba"
    b"\x0a\x63\x7d\xc5\xa2\xc8\x98\xa6\x11\x3f\x98\x04\xbe\xf9\x0d\xae\x1b\x71\x0b\x35\x13\x1c\x47\x1b"
    b"\x28\xdb\x77\xf5\x23\x04\x7d\x84\x32\xca\xab\x7b\x40\xc7\x24\x93\x3c\x9e\xbe\x0a\x15\xc9\xbe\xbc"
    b"\x43\x1d\x67\xc4\x9c\x10\x0d\x4c\x4c\xc5\xd4\xbe\xcb\x3e\x42\xb6\x59\x7f\x29\x9c\xfc\x65\x7e\x2a"
    b"\x5f\xcb\x6f\xab\x3a\xd6\xfa\xec\x6c\x44\x19\x8c\x4a\x47\x58\x17"
)
_W = bytearray(128)  # the message schedule's window of 16 words (reused: one compression at a time)


@micropython.viper
def load_be(state, src):
    s = ptr32(state)
    b = ptr8(src)
    for i in range(16):
        j = 4 * i
        s[i] = (b[j] << 24) | (b[j + 1] << 16) | (b[j + 2] << 8) | b[j + 3]


@micropython.viper
def store_be(state, out):
    s = ptr32(state)
    o = ptr8(out)
    for i in range(16):
        v = uint(s[i])
        j = 4 * i
        o[j] = v >> 24
        o[j + 1] = v >> 16
        o[j + 2] = v >> 8
        o[j + 3] = v


@micropython.viper
def compress(state, buf, off: int):
    s = ptr32(state)
    b = ptr8(buf)
    k = ptr8(_K)
    w = ptr32(_W)
    M = uint(0xFFFFFFFF)
    for i in range(32):
        j = off + 4 * i
        w[i] = (b[j] << 24) | (b[j + 1] << 16) | (b[j + 2] << 8) | b[j + 3]
    ah = uint(s[0])
    al = uint(s[1])
    bh = uint(s[2])
    bl = uint(s[3])
    ch = uint(s[4])
    cl = uint(s[5])
    dh = uint(s[6])
    dl = uint(s[7])
    eh = uint(s[8])
    el = uint(s[9])
    fh = uint(s[10])
    fl = uint(s[11])
    gh = uint(s[12])
    gl = uint(s[13])
    hh = uint(s[14])
    hl = uint(s[15])
    for t in range(80):
        i = 2 * (t & 15)  # the schedule is a window of 16 words: w[t] replaces w[t-16]
        if t >= 16:
            j1 = 2 * ((t + 1) & 15)
            j9 = 2 * ((t + 9) & 15)
            j14 = 2 * ((t + 14) & 15)
            xh = uint(w[j1])  # w[t-15], slot (t+1) & 15
            xl = uint(w[j1 + 1])
            s0h = ((xh >> 1) | (xl << 31)) ^ ((xh >> 8) | (xl << 24)) ^ (xh >> 7)
            s0l = ((xl >> 1) | (xh << 31)) ^ ((xl >> 8) | (xh << 24)) ^ ((xl >> 7) | (xh << 25))
            xh = uint(w[j14])  # w[t-2]
            xl = uint(w[j14 + 1])
            s1h = ((xh >> 19) | (xl << 13)) ^ ((xl >> 29) | (xh << 3)) ^ (xh >> 6)
            s1l = ((xl >> 19) | (xh << 13)) ^ ((xh >> 29) | (xl << 3)) ^ ((xl >> 6) | (xh << 26))
            s0h &= M
            s0l &= M
            s1h &= M
            s1l &= M
            ph = uint(w[i])  # w[t-16]: the slot w[t] takes
            pl = uint(w[i + 1])
            lo = (pl + s0l) & M
            ph = (ph + s0h + ((((pl & s0l) | ((pl | s0l) & ~lo)) >> 31) & 1)) & M
            pl = lo
            xh = uint(w[j9])  # w[t-7]
            xl = uint(w[j9 + 1])
            lo = (pl + xl) & M
            ph = (ph + xh + ((((pl & xl) | ((pl | xl) & ~lo)) >> 31) & 1)) & M
            pl = lo
            lo = (pl + s1l) & M
            ph = (ph + s1h + ((((pl & s1l) | ((pl | s1l) & ~lo)) >> 31) & 1)) & M
            pl = lo
            w[i] = ph
            w[i + 1] = pl
        # t1 = h + Sigma1(e) + Ch(e, f, g) + K[t] + W[t]; 41 = 32 + 9 swaps the halves
        xh = ((eh >> 14) | (el << 18)) ^ ((eh >> 18) | (el << 14)) ^ ((el >> 9) | (eh << 23))
        xl = ((el >> 14) | (eh << 18)) ^ ((el >> 18) | (eh << 14)) ^ ((eh >> 9) | (el << 23))
        xh &= M
        xl &= M
        lo = (hl + xl) & M
        t1h = (hh + xh + ((((hl & xl) | ((hl | xl) & ~lo)) >> 31) & 1)) & M
        t1l = lo
        xh = gh ^ (eh & (fh ^ gh))
        xl = gl ^ (el & (fl ^ gl))
        lo = (t1l + xl) & M
        t1h = (t1h + xh + ((((t1l & xl) | ((t1l | xl) & ~lo)) >> 31) & 1)) & M
        t1l = lo
        j = 8 * t
        xh = uint((k[j] << 24) | (k[j + 1] << 16) | (k[j + 2] << 8) | k[j + 3])
        xl = uint((k[j + 4] << 24) | (k[j + 5] << 16) | (k[j + 6] << 8) | k[j + 7])
        lo = (t1l + xl) & M
        t1h = (t1h + xh + ((((t1l & xl) | ((t1l | xl) & ~lo)) >> 31) & 1)) & M
        t1l = lo
        xh = uint(w[i])
        xl = uint(w[i + 1])
        lo = (t1l + xl) & M
        t1h = (t1h + xh + ((((t1l & xl) | ((t1l | xl) & ~lo)) >> 31) & 1)) & M
        t1l = lo
        # t2 = Sigma0(a) + Maj(a, b, c); 34 = 32 + 2 and 39 = 32 + 7 swap the halves
        xh = ((ah >> 28) | (al << 4)) ^ ((al >> 2) | (ah << 30)) ^ ((al >> 7) | (ah << 25))
        xl = ((al >> 28) | (ah << 4)) ^ ((ah >> 2) | (al << 30)) ^ ((ah >> 7) | (al << 25))
        xh &= M
        xl &= M
        yh = (ah & bh) | (ch & (ah | bh))
        yl = (al & bl) | (cl & (al | bl))
        lo = (xl + yl) & M
        yh = (xh + yh + ((((xl & yl) | ((xl | yl) & ~lo)) >> 31) & 1)) & M
        yl = lo
        hh = gh
        hl = gl
        gh = fh
        gl = fl
        fh = eh
        fl = el
        lo = (dl + t1l) & M
        eh = (dh + t1h + ((((dl & t1l) | ((dl | t1l) & ~lo)) >> 31) & 1)) & M
        el = lo
        dh = ch
        dl = cl
        ch = bh
        cl = bl
        bh = ah
        bl = al
        lo = (t1l + yl) & M
        ah = (t1h + yh + ((((t1l & yl) | ((t1l | yl) & ~lo)) >> 31) & 1)) & M
        al = lo
    xh = uint(s[0])
    xl = uint(s[1])
    lo = (xl + al) & M
    ah = (xh + ah + ((((xl & al) | ((xl | al) & ~lo)) >> 31) & 1)) & M
    al = lo
    s[0] = ah
    s[1] = al
    xh = uint(s[2])
    xl = uint(s[3])
    lo = (xl + bl) & M
    bh = (xh + bh + ((((xl & bl) | ((xl | bl) & ~lo)) >> 31) & 1)) & M
    bl = lo
    s[2] = bh
    s[3] = bl
    xh = uint(s[4])
    xl = uint(s[5])
    lo = (xl + cl) & M
    ch = (xh + ch + ((((xl & cl) | ((xl | cl) & ~lo)) >> 31) & 1)) & M
    cl = lo
    s[4] = ch
    s[5] = cl
    xh = uint(s[6])
    xl = uint(s[7])
    lo = (xl + dl) & M
    dh = (xh + dh + ((((xl & dl) | ((xl | dl) & ~lo)) >> 31) & 1)) & M
    dl = lo
    s[6] = dh
    s[7] = dl
    xh = uint(s[8])
    xl = uint(s[9])
    lo = (xl + el) & M
    eh = (xh + eh + ((((xl & el) | ((xl | el) & ~lo)) >> 31) & 1)) & M
    el = lo
    s[8] = eh
    s[9] = el
    xh = uint(s[10])
    xl = uint(s[11])
    lo = (xl + fl) & M
    fh = (xh + fh + ((((xl & fl) | ((xl | fl) & ~lo)) >> 31) & 1)) & M
    fl = lo
    s[10] = fh
    s[11] = fl
    xh = uint(s[12])
    xl = uint(s[13])
    lo = (xl + gl) & M
    gh = (xh + gh + ((((xl & gl) | ((xl | gl) & ~lo)) >> 31) & 1)) & M
    gl = lo
    s[12] = gh
    s[13] = gl
    xh = uint(s[14])
    xl = uint(s[15])
    lo = (xl + hl) & M
    hh = (xh + hh + ((((xl & hl) | ((xl | hl) & ~lo)) >> 31) & 1)) & M
    hl = lo
    s[14] = hh
    s[15] = hl

# Flash files written atomically: a new file, then rename over the old one. On the ESP32 the
# filesystem is littlefs, whose rename is atomic; a power cut leaves either the old or the new
# file, never a torn one. Same code on a host (CPython) for the simulators.
import os


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


class Flash:
    def __init__(self, root):
        self.root = root.rstrip("/")
        self.mkdir("")

    def path(self, name):
        return self.root + "/" + name if name else self.root

    def mkdir(self, name):
        p = self.path(name)
        if not _exists(p):
            os.mkdir(p)

    def read(self, name):
        try:
            with open(self.path(name), "rb") as f:
                return f.read()
        except OSError:
            return None

    def write_atomic(self, name, data):
        tmp = self.path(name) + ".new"
        with open(tmp, "wb") as f:
            f.write(data)
        self._sync()
        os.rename(tmp, self.path(name))
        self._sync()

    def remove(self, name):
        try:
            os.remove(self.path(name))
        except OSError:
            pass
        self._sync()

    def rename(self, old, new):
        os.rename(self.path(old), self.path(new))
        self._sync()

    def listdir(self, name):
        try:
            return [n for n in os.listdir(self.path(name)) if not n.endswith(".new")]
        except OSError:
            return []

    def _sync(self):
        sync = getattr(os, "sync", None)
        if sync:
            sync()

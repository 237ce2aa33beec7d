"""An in-memory flash with the firmware Flash's interface for scripts that run under MicroPython
(and CPython): tests prepend `MEMFLASH`, the class's source, to the script they run."""

MEMFLASH = '''
class MemFlash:
    """Files by name; atomic writes are plain assignments."""

    def __init__(self):
        self.files = {}

    def mkdir(self, name):
        pass

    def read(self, name):
        return self.files.get(name)

    def write_atomic(self, name, data):
        self.files[name] = bytes(data)

    def remove(self, name):
        self.files.pop(name, None)

    def rename(self, old, new):
        self.files[new] = self.files.pop(old)

    def listdir(self, name):
        p = name + '/'
        return [k[len(p):] for k in self.files if k.startswith(p)]
'''

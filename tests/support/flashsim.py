"""An in-memory flash with the interface of firmware/shell/flash.py that can lose power at any
single step: a write of the temporary file, a rename, or a remove."""

from __future__ import annotations


class PowerCut(Exception):
    pass


class CuttableFlash:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.steps = 0
        self.cut_at: int | None = None

    def _step(self) -> None:
        if self.cut_at is not None and self.steps >= self.cut_at:
            raise PowerCut(f"power cut at step {self.steps}")
        self.steps += 1

    def mkdir(self, name: str) -> None:
        pass

    def read(self, name: str):
        return self.files.get(name)

    def write_atomic(self, name: str, data: bytes) -> None:
        self._step()
        self.files[name + ".new"] = bytes(data)  # written, not yet visible under its name
        self._step()
        self.files[name] = self.files.pop(name + ".new")

    def remove(self, name: str) -> None:
        self._step()
        self.files.pop(name, None)

    def rename(self, old: str, new: str) -> None:
        self._step()
        self.files[new] = self.files.pop(old)

    def listdir(self, name: str) -> list[str]:
        prefix = name + "/"
        return [k[len(prefix):] for k in self.files if k.startswith(prefix) and not k.endswith(".new")]

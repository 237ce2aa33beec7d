"""Counters of what a node did and refused, served at /metrics in Prometheus text format."""

from __future__ import annotations

import threading
from collections import Counter


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()

    def inc(self, name: str, label: str = "", n: int = 1) -> None:
        with self._lock:
            self._counts[(name, label)] += n

    def get(self, name: str, label: str = "") -> int:
        return self._counts.get((name, label), 0)

    def total(self, name: str) -> int:
        with self._lock:
            return sum(v for (n, _), v in self._counts.items() if n == name)

    def snapshot(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        with self._lock:
            for (name, label), v in sorted(self._counts.items()):
                out.setdefault(name, {})[label or "total"] = v
        return out

    def prometheus(self, gauges: dict[str, int]) -> str:
        lines = []
        with self._lock:
            items = sorted(self._counts.items())
        for (name, label), v in items:
            lab = f'{{reason="{label}"}}' if label else ""
            lines.append(f"bureau_{name}_total{lab} {v}")
        for name, v in sorted(gauges.items()):
            lines.append(f"bureau_{name} {v}")
        return "\n".join(lines) + "\n"

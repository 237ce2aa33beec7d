"""Interpreter settings of a serving node process (`bureau run`).

The API's event loop shares the GIL with the ingest, consensus and MQTT threads: a thread that
waits for the GIL gets it only after the holder's switch interval (5 ms by default), so each
wait adds that much to a query's latency under ingest. The collector's full passes walk every
tracked object, most of them the state loaded at start-up that lives as long as the process."""

from __future__ import annotations

import gc
import sys

SWITCH_INTERVAL_S = 0.0005
# young passes less often (fewer short-lived objects promoted to old generations), as many old
GC_THRESHOLDS = (20_000, 20, 20)


def tune_for_serving() -> None:
    """Before the node starts: a short switch interval and the collector's thresholds."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    gc.set_threshold(*GC_THRESHOLDS)


def freeze_startup_heap() -> None:
    """Once the node is up: what start-up made is moved out of the collector's passes (objects
    still die by reference counting; only cycles among them stay until exit)."""
    gc.collect()
    gc.freeze()

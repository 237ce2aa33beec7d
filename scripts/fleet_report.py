"""The fleet simulation's report (scripts/fleet.py): the text summary and the PNG plots of
throughput, publish-to-ack latency percentiles and backlog over the run (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

from bureau.tools.faults import percentile

WINDOW_S = 5.0  # latency percentiles over time are taken over windows this long


def latency_summary(values: list[float]) -> dict:
    return {"count": len(values), **{f"p{q}": None if not values else round(percentile(values, q / 100), 1)
                                     for q in (50, 95, 99)},
            "max": round(max(values), 1) if values else None}


def windows(samples: list[dict], key: str = "latencies_ms") -> list[tuple[float, dict]]:
    """(window end s, latency summary) over WINDOW_S windows of the timeline's samples."""
    out, bucket, end = [], [], None
    for s in samples:
        if end is None:
            end = s["t"] + WINDOW_S
        if s["t"] >= end:
            out.append((end, latency_summary(bucket)))
            bucket, end = [], s["t"] + WINDOW_S
        bucket += s[key]
    if bucket:
        out.append((end, latency_summary(bucket)))
    return out


def plot(samples: list[dict], out_dir: Path, title: str) -> list[str]:
    """Writes throughput.png, latency.png and backlog.png; returns their paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    t = [s["t"] for s in samples]
    written = []

    def save(fig, name: str) -> None:
        path = out_dir / name
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(str(path))

    fig, ax = plt.subplots(figsize=(10, 4))
    rates = [(b["t"], (b["issued"] - a["issued"]) / (b["t"] - a["t"]), (b["acked"] - a["acked"]) / (b["t"] - a["t"]))
             for a, b in zip(samples, samples[1:]) if b["t"] > a["t"]]
    ax.plot([r[0] for r in rates], [r[1] for r in rates], label="receipts issued /s", lw=1)
    ax.plot([r[0] for r in rates], [r[2] for r in rates], label="receipts committed and acked /s", lw=1)
    ax2 = ax.twinx()
    ax2.plot(t, [s["charging"] for s in samples], color="grey", ls=":", label="sessions charging")
    ax2.set_ylabel("sessions charging")
    _day_axis(ax, samples)
    ax.set_ylabel("receipts / s")
    ax.set_title(f"{title}: throughput")
    _legend(ax, ax2)
    save(fig, "throughput.png")

    fig, ax = plt.subplots(figsize=(10, 4))
    w = [(end, s) for end, s in windows(samples) if s["count"]]
    for q in ("p50", "p95", "p99"):
        ax.plot([e for e, _ in w], [s[q] for _, s in w], label=f"publish -> ack {q}", lw=1)
    _day_axis(ax, samples)
    ax.set_ylabel("ms")
    ax.set_title(f"{title}: latency over {WINDOW_S:g} s windows")
    ax.legend(loc="upper left")
    save(fig, "latency.png")

    fig, ax = plt.subplots(figsize=(10, 4))
    ax.plot(t, [s["pending"] for s in samples], label="receipts in chargers' flash, not yet acked", lw=1)
    ax2 = ax.twinx()
    ax2.plot(t, [s["behind_s"] for s in samples], color="grey", ls=":", label="simulation behind its clock (s)")
    ax2.set_ylabel("s behind")
    _day_axis(ax, samples)
    ax.set_ylabel("receipts")
    ax.set_title(f"{title}: backlog")
    _legend(ax, ax2)
    save(fig, "backlog.png")
    return written


def _day_axis(ax, samples: list[dict]) -> None:
    ax.set_xlabel("wall time since the day started, s (simulated local hour on top)")
    day = [(s["t"], s["hour"]) for s in samples if s["hour"] is not None]
    if not day:
        return
    top = ax.secondary_xaxis("top")
    ticks = [next((t for t, h in day if h >= hour), None) for hour in range(0, 25, 3)]
    shown = [(t, hour) for t, hour in zip(ticks, range(0, 25, 3)) if t is not None]
    top.set_xticks([t for t, _ in shown], [f"{h:02d}:00" for _, h in shown])


def _legend(ax, ax2) -> None:
    lines, labels = ax.get_legend_handles_labels()
    more, more_labels = ax2.get_legend_handles_labels()
    ax.legend(lines + more, labels + more_labels, loc="upper left")


def print_report(r: dict) -> None:
    lat, ph = r["publish_to_ack_ms"], r["phones"]
    print(f"\nday: {r['day_s']:g} s of wall time for a simulated day ({r['speed']:g}x), {r['chargers']} chargers in "
          f"{r['workers']} worker processes, metered every {r['interval_s']} simulated s; run {r['seconds']} s in all")
    print(f"sessions: {r['sessions']} of {r['planned_sessions']} planned ({r['start_failed']} not started), stops "
          f"{r['stop_reasons']}; peak {r['peak_charging']} charging at once")
    print(f"receipts: {r['receipts_issued']} issued, {r['receipts_acked']} acked, committed on every node "
          + ", ".join(f"{n} {c}" for n, c in r["committed_by_node"].items())
          + f"; lost {r['receipts_lost']}, doubled {r['receipts_doubled']}, refused {r['receipts_refused']}")
    print(f"wallets: {r['wallets_checked']} checked on every node: "
          + ("consistent" if r["wallets_consistent"] else "MISMATCH " + "; ".join(r["wallet_problems"])))
    print(f"chains: {'valid' if r['chains_valid'] else 'INVALID'}, state roots "
          f"{'agree' if r['state_roots_agree'] else 'DISAGREE'}, heights {r['heights']}")
    print(f"publish -> ack: p50 {lat['p50']} ms, p95 {lat['p95']} ms, p99 {lat['p99']} ms, max {lat['max']} ms "
          f"({lat['count']} receipts); peak backlog {r['peak_backlog']}; worker lag max {r['worker_lag_s']} s")
    print(f"phones: {ph['queries']} queries ({ph['requests']} requests, {ph['rate_per_s']}/s), latency p50 "
          f"{ph['latency_ms']['p50']} ms, p95 {ph['latency_ms']['p95']} ms, p99 {ph['latency_ms']['p99']} ms; "
          f"verified {ph['verified']}, verification failures {ph['verification_failures']}, answers {ph['statuses']}")
    print(f"workers: CPU {r['worker_cpu_s']} s, RSS " + ", ".join(
        "?" if k is None else f"{k / 1024:.0f} MiB" for k in r["worker_rss_kib"]))
    for name, m in r["rss_kib"].items():
        print(f"memory {name}: RSS max {m['max'] / 1024:.1f} MiB, last {m['last'] / 1024:.1f} MiB")
    print(f"plots: {', '.join(r['plots'])}")

"""A node's metrics on prometheus-client, in a registry of its own (several nodes in one process
stay apart), served at /metrics in the Prometheus text format with HELP and TYPE.

Counters are declared here once, by name: `inc("rejected", "bad_signature")` counts
`bureau_rejected_total{reason="bad_signature"}`; an undeclared name is a KeyError, so every
series has its help text. Gauges read the node when scraped; histograms are observed where the
thing they time ends."""

from __future__ import annotations

from typing import Callable

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# `_created` series double every counter and say nothing an operator reads
prometheus_client.disable_created_metrics()

PREFIX = "bureau_"
CONTENT_TYPE = "text/plain; version=0.0.4"  # what generate_latest writes; the server adds the charset

# name -> (help, labelled by reason). The one list of what a node counts.
COUNTERS: dict[str, tuple[str, bool]] = {
    # ingest (MQTT receipts)
    "received": ("Receipt messages received from the broker", False),
    "admitted": ("Receipts admitted into the mempool from the broker", False),
    "admission_paused": ("Half-second waits of admission at a full mempool (MEMPOOL_PAUSE_AT), the broker "
                         "holding the receipts not yet taken", False),
    "rejected": ("Receipts from the broker rejected, by reason", True),
    "committed": ("Receipts committed in blocks (rate: receipts ingested per second)", False),
    "resent_acks": ("Acks sent again for receipts already committed", False),
    "resent_acks_deferred": ("Resent receipts committed but not yet readable, left for the charger's next resend",
                             False),
    "quarantined": ("Inputs whose admission check raised, kept in <data dir>/quarantine and not answered, by "
                    "source (receipt, relayed); resends counted again", True),
    "status_refused": ("Charger status messages not understood, by reason", True),
    "relayed_admitted": ("Transactions relayed by peers and admitted here", False),
    "relayed_rejected": ("Transactions relayed by peers or refused in a block, by reason", True),
    "operator_refused": ("Operator actions refused (final in a block, or dropped before one), by reason", True),
    # ingest workers (docs/ingest-workers.md)
    "worker_received": ("Receipts ingest workers handed to this node", False),
    "worker_admitted": ("Receipts from ingest workers admitted into the mempool", False),
    "worker_refused": ("Ingest worker logins refused, by reason", True),
    "worker_disconnected": ("Ingest worker links dropped, by reason", True),
    "worker_reply_dropped": ("Acks and rejects not sent: their worker was gone or behind (the charger resends)",
                             False),
    # consensus and peers
    "blocks_committed": ("Blocks committed by consensus", False),
    "consensus_verdict": ("Consensus messages refused by the core, by verdict", True),
    "equivocation_evidence": ("Double-signing evidence seen from validators", False),
    "peer_rejected": ("Peer messages that did not decode, by reason", True),
    "peer_dropped": ("Peer messages dropped on arrival, by reason", True),
    "peer_disconnected": ("Peer links cut, by reason", True),
    "peer_refused": ("Inbound peer connections refused, by reason", True),
    "peer_send_dropped": ("Outbound peer messages dropped from a full queue, by channel", True),
    "sync_refused": ("Block sync requests refused, by reason", True),
    "sync_served": ("Block sync requests served", False),
    # authorization
    "auth_accept": ("Authorization requests accepted", True),
    "auth_reject": ("Authorization requests rejected, by reason", True),
    "auth_rejected": ("Authorization messages refused before the service, by reason", True),
    "auth_repeated": ("Authorization requests answered again from the reply kept", False),
    "auth_release": ("Authorization holds released, by reason", True),
    "auth_hold_expired": ("Authorization holds that expired unreleased", False),
    "app_starts": ("Phone-app start commands", False),
    "authz_list_truncated": ("Offline lists cut to their page limit", False),
    "authz_list_published": ("Offline lists published", False),
    "authz_tariff_published": ("Tariffs published to chargers", False),
    "authz_retained_wrong": ("Retained documents found changed or erased on the broker, by kind", True),
    "authz_retained_restored": ("Retained documents written again, by kind", True),
    # OCPP charge points
    "ocpp_refused": ("OCPP connections refused at the upgrade or closed, by reason", True),
    "ocpp_bills": ("OCPP bills committed after the charge point's stop, by verification (ocmf or bureau)", True),
    "ocpp_bill_refused": ("OCPP bills the ledger's rules refused, by reason", True),
    "ocpp_unknown_stop": ("OCPP stops of transactions neither running here nor billed", False),
}

# buckets (s) for a block interval of 200 ms and a loaded machine
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._counters = {name: Counter(PREFIX + name, help_, ["reason"] if labelled else [], registry=self.registry)
                          for name, (help_, labelled) in COUNTERS.items()}
        self.commit_latency = Histogram(
            PREFIX + "commit_latency_seconds",
            "From a block's proposal (its header time, set by the proposer) to its commit on this node",
            buckets=LATENCY_BUCKETS, registry=self.registry)
        self.receipt_latency = Histogram(
            PREFIX + "receipt_publish_to_commit_seconds",
            "From a receipt's arrival on this node over MQTT (as the broker delivers its publish) to its commit",
            buckets=LATENCY_BUCKETS, registry=self.registry)

    def inc(self, name: str, label: str = "", n: int = 1) -> None:
        c = self._counters[name]
        (c.labels(label) if COUNTERS[name][1] else c).inc(n)

    def gauge(self, name: str, help_: str, read: Callable[[], float]) -> None:
        """A gauge read from the node at each scrape."""
        Gauge(PREFIX + name, help_, registry=self.registry).set_function(read)

    def get(self, name: str, label: str = "") -> int:
        labels = {"reason": label} if COUNTERS[name][1] else {}
        return int(self.registry.get_sample_value(f"{PREFIX}{name}_total", labels) or 0)

    def by_reason(self, name: str) -> dict[str, int]:
        """The counts of a counter labelled by reason, per reason."""
        return {s.labels.get("reason", ""): int(s.value) for m in self._counters[name].collect()
                for s in m.samples if s.name.endswith("_total")}

    def total(self, name: str) -> int:
        return sum(self.by_reason(name).values())

    def snapshot(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for name in COUNTERS:
            for label, v in sorted(self.by_reason(name).items()):
                if v:
                    out.setdefault(name, {})[label or "total"] = v
        return out

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric of this node."""
        return generate_latest(self.registry)

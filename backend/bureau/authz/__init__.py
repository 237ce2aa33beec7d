"""Driver authorization: online decisions with holds, phone starts, the signed offline list and
the signed tariff push (docs/authorization.md)."""

from __future__ import annotations

from ..config import AuthzSettings
from .mqtt import AuthzMqtt
from .service import AuthzError, AuthzService


class Authz:
    """What a node wires in: the service, and its MQTT shell when this node serves chargers."""

    def __init__(self, node) -> None:
        self.settings = node.settings.authz
        first = node.genesis.validators[0].id
        self.enabled = self.settings.enabled if self.settings.enabled is not None else node.settings.node_id == first
        self.served_by = node.settings.node_id if self.enabled else first
        tariffs = node.genesis.tariffs
        tariff_id = self.settings.tariff_id or (tariffs[0].tariff_id if tariffs else "")
        self.service = AuthzService(node.settings.node_id, node.chain, node.key, node.metrics, self.settings,
                                    node.repo.engine, tariff_id)
        user, password = node.settings.mqtt_login("authz")
        self.shell = AuthzMqtt(self.service, node.metrics, host=node.settings.mqtt.host, port=node.settings.mqtt.port,
                               client_id=user, username=user, password=password, tls=node.settings.mqtt.tls,
                               ca_file=node.settings.mqtt.ca_file, supervisor=node.supervisor) if self.enabled else None

    def start(self) -> None:
        if self.shell:
            self.shell.start()

    def stop(self) -> None:
        if self.shell:
            self.shell.stop()


__all__ = ["Authz", "AuthzError", "AuthzService", "AuthzSettings"]

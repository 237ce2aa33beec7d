"""The tariff push follows the versions' effective times (docs/authorization.md, The tariff
push): the version in force now, and from TARIFF_LEAD_S before the next version's time that one,
carrying its effective time so a charger keeps it until its own clock gets there."""

import threading

from bureau.authz import wire
from bureau.authz.service import TARIFF_LEAD_S, AuthzService
from bureau.config import AuthzSettings
from bureau.metrics import Metrics
from bureau.storage import Repository
from bureau.tools.network import DEFAULT_TARIFF
from tests.unit.test_operator_actions import NODE, T0_MS, Ledger, _action, _kinds

T0_S = T0_MS // 1000


class ChainOf:
    """What the authorization service reads of the node's chain, over a real ledger state."""

    def __init__(self, ledger: Ledger) -> None:
        self.state, self.genesis, self.lock = ledger.state, ledger.state.genesis, threading.RLock()

    @property
    def height(self) -> int:
        return self.state.height

    def on_commit(self, listener) -> None:
        pass


def _pushed(service) -> tuple[int, int]:
    _, env = service.tariff_push()
    push, _, _ = wire.decode_tariff(env)
    return push.doc["version"], push.effective_from


def test_the_push_sends_the_version_in_force_then_the_next_one_ahead_of_its_time(database_urls):
    ledger = Ledger(tariffs=(DEFAULT_TARIFF,))
    switch = T0_S + 3600
    ex = ledger.block([_action("publish_tariff", {"tariff": {**DEFAULT_TARIFF, "version": 2},
                                                  "effective_from": switch})], T0_MS)
    assert _kinds(ex) == [("publish_tariff", None)]
    clock = [T0_S + 10]
    repo = Repository(database_urls("push"))
    service = AuthzService("bureau-1", ChainOf(ledger), NODE, Metrics(), AuthzSettings(), repo.engine,
                           DEFAULT_TARIFF["tariff_id"], now=lambda: clock[0])
    assert _pushed(service) == (1, 0)  # the genesis version, in force from time 0
    service.tariff_dirty.clear()
    clock[0] = switch - TARIFF_LEAD_S - 1
    service.sweep()
    assert not service.tariff_dirty.is_set()
    clock[0] = switch - TARIFF_LEAD_S
    service.sweep()
    assert service.tariff_dirty.is_set()  # the publisher pushes again now
    assert _pushed(service) == (2, switch)
    clock[0] = switch + 10
    assert _pushed(service) == (2, switch)

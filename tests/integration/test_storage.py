"""The node's database on SQLite and PostgreSQL: the migrations' head is the schema the code
declares, foreign keys are enforced, and a database of release 0.1 holding a committed chain
upgrades in place: the chain still verifies and the node carries on from it."""

import contextlib
import io
import json

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from nacl.signing import SigningKey

from bureau import cli
from bureau.ledger.audit import audit_chain
from bureau.receipts.codec import seal
from bureau.storage import Repository, migrate
from bureau.storage import tables as t
from bureau.storage.migrations import schema_0001
from bureau.storage.repository import make_engine
from tests.integration.test_bureau_node import _receipt, _setup
from tests.support.bureau import ReplyListener, TestBureau


def test_the_migrations_head_is_the_declared_schema(database_urls):
    repo = Repository(database_urls("head"))
    try:
        assert migrate.current(repo.engine) == migrate.head() == "0012"
        with repo.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), t.metadata)
        assert diff == []
    finally:
        repo.close()


def test_foreign_keys_are_enforced(database_urls):
    repo = Repository(database_urls("fk"))
    try:
        orphans = [(t.txs, {"height": 1, "idx": 0, "tx_hash": b"\x01" * 32, "kind": "receipt", "data": b"x"}),
                   (t.cards, {"uid": "04AA", "wallet_id": "W-none"})]
        for table, row in orphans:
            with pytest.raises(sa.exc.IntegrityError):
                with repo.engine.begin() as conn:
                    conn.execute(table.insert(), row)
        with repo.engine.connect() as conn:  # a later connection from the pool enforces them too
            assert conn.execute(sa.select(sa.func.count()).select_from(t.txs)).scalar_one() == 0
    finally:
        repo.close()


def _copy_into_release_schema(source_url: str, target_url: str) -> None:
    """A database as release 0.1 made it (its create_all, no alembic_version), holding the rows
    of `source_url`: the columns of every table are the same in both schemas."""
    source, target = make_engine(source_url), make_engine(target_url)
    try:
        schema_0001.metadata.create_all(target)
        with source.connect() as src, target.begin() as dst:
            for table in schema_0001.metadata.sorted_tables:
                rows = [dict(r) for r in src.execute(sa.select(table)).mappings()]
                if rows:
                    dst.execute(table.insert(), rows)
            if target.dialect.name == "postgresql":  # ids came from the source's sequence
                dst.execute(sa.text("SELECT setval(pg_get_serial_sequence('wallet_entries', 'id'), "
                                    "(SELECT max(id) FROM wallet_entries))"))
        with target.connect() as conn:
            assert not sa.inspect(conn).has_table("alembic_version")
    finally:
        source.dispose()
        target.dispose()


def _db_command(command: str, url: str) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["db", command, "--db-url", url]) == 0
    return json.loads(out.getvalue())


def test_a_release_database_upgrades_and_the_node_resumes_on_it(tmp_path, mosquitto, database_urls):
    charger, driver = SigningKey.generate(), SigningKey.generate()
    written, release = database_urls("written"), database_urls("release")
    replies = ReplyListener(mosquitto)
    try:
        b = TestBureau(tmp_path, mosquitto, written)
        try:
            _setup(b, charger, driver)
            for seq in (1, 2, 3):
                replies.publish("ev/v1/charger/GZ-TH-0001/receipt", seal(_receipt(seq), charger))
            assert sorted(replies.next()[1]["seq"] for _ in range(3)) == [1, 2, 3]
            height, root = b.node.chain.height, b.node.chain.state.state_root
        finally:
            b.close()
        _copy_into_release_schema(written, release)

        assert _db_command("current", release) == {"head": "0012", "current": "0001", "up_to_date": False}
        upgraded = _db_command("upgrade", release)  # what an operator runs (docs/storage.md)
        assert (upgraded["before"], upgraded["current"], upgraded["up_to_date"]) == ("0001", "0012", True)
        print(f"upgrade of {height} blocks: {upgraded['seconds']} s")

        b = TestBureau(tmp_path, mosquitto, release)  # same node, same genesis, the upgraded database
        try:
            assert b.node.chain.height == height and b.node.chain.state.state_root == root
            replies.publish("ev/v1/charger/GZ-TH-0001/receipt", seal(_receipt(4), charger))
            topic, reply = replies.next()
            assert reply["type"] == "ack" and reply["seq"] == 4 and reply["height"] > height
            report = audit_chain(b.node.genesis, b.node.repo)
            assert report["chain_valid"], report["problem"]
            assert report["receipts"] == 4 and report["balances_fen"] == 100_000 - 4 * 910
        finally:
            b.close()
    finally:
        replies.close()


def test_a_database_with_rows_naming_missing_rows_is_not_upgraded(database_urls):
    url = database_urls("orphans")
    engine = make_engine(url)
    try:
        schema_0001.metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(schema_0001.cards.insert(), {"uid": "04AA", "wallet_id": "W-none"})
        with pytest.raises((migrate.MigrationError, sa.exc.IntegrityError)):
            migrate.upgrade(engine)
        assert migrate.current(engine) == "0001"  # nothing changed: still the release's database
        with engine.connect() as conn:
            assert not sa.inspect(conn).has_table("alembic_version")
            assert sa.inspect(conn).get_foreign_keys("cards") == []
    finally:
        engine.dispose()


def test_a_tariff_published_before_effective_times_is_in_force_from_its_blocks_second(database_urls):
    """Migration 0005 fills `effective_from` with the publishing block's time in whole seconds,
    rounded down as the ledger reads block times (a true division would round up on PostgreSQL)."""
    engine = make_engine(database_urls("tariff_from"))
    try:
        migrate.upgrade(engine, "0004")
        block_ms = 1_760_000_000_999
        tariffs = sa.table("tariffs", sa.column("tariff_id"), sa.column("version"), sa.column("doc"),
                           sa.column("height"))
        with engine.begin() as conn:
            conn.execute(t.blocks.insert(), {"height": 1, "hash": b"\x01" * 32, "prev_hash": b"\x00" * 32,
                                             "time_ms": block_ms, "tx_root": b"\x00" * 32, "state_root": b"\x00" * 32,
                                             "proposer": "bureau-1", "tx_count": 0, "header": b"h", "certificate": b"{}"})
            conn.execute(tariffs.insert(), {"tariff_id": "GD-2026-A", "version": 2, "doc": "{}", "height": 1})
        assert migrate.upgrade(engine)[1] == migrate.head()
        with engine.connect() as conn:
            assert conn.execute(sa.select(t.tariffs.c.effective_from)).scalar_one() == block_ms // 1000
    finally:
        engine.dispose()

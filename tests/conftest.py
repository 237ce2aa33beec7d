import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT / "firmware" / "lib", ROOT):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from bureau.tools.mosquitto import Mosquitto  # noqa: E402
from tests.support.postgres import Postgres  # noqa: E402


@pytest.fixture
def mosquitto(tmp_path):
    """A real broker on a free loopback port; clients log in with `mosquitto.login(...)`."""
    with Mosquitto(workdir=tmp_path / "broker") as broker:
        yield broker


@pytest.fixture(scope="session")
def postgres_cluster():
    cluster = Postgres().start()
    yield cluster
    cluster.stop()


@pytest.fixture
def postgres_url(postgres_cluster, request):
    import re
    name = "t_" + re.sub(r"[^a-z0-9]", "_", request.node.name.lower())[:50]
    return postgres_cluster.create_database(name)

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import chargerhost  # noqa: E402,F401  (puts the firmware's core, drivers and shell on sys.path)

from bureau.tools.mosquitto import Mosquitto  # noqa: E402
from bureau.tools.postgres import PostgresCluster  # noqa: E402


@pytest.fixture
def mosquitto(tmp_path):
    """A real broker on a free loopback port; clients log in with `mosquitto.login(...)`."""
    with Mosquitto(workdir=tmp_path / "broker") as broker:
        yield broker


@pytest.fixture(scope="session")
def postgres_cluster():
    cluster = PostgresCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture
def postgres_url(postgres_cluster, request):
    import re
    name = "t_" + re.sub(r"[^a-z0-9]", "_", request.node.name.lower())[:50]
    return postgres_cluster.database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_urls(request, tmp_path):
    """Makes fresh databases on each backend: `database_urls("name")` is the URL of a new one."""
    def make(name: str) -> str:
        if request.param == "sqlite":
            return f"sqlite:///{tmp_path / (name + '.db')}"
        import re
        cluster = request.getfixturevalue("postgres_cluster")
        return cluster.database(re.sub(r"[^a-z0-9]", "_", f"{name}_{request.node.name}".lower())[:60])
    return make

import pytest

from tests.support.bureau import ReplyListener, TestBureau


@pytest.fixture
def bureau(tmp_path, mosquitto):
    """One bureau node in this process, its API behind a test client, on the test's broker."""
    b = TestBureau(tmp_path, mosquitto)
    yield b
    b.close()


@pytest.fixture
def replies(mosquitto):
    """Listens on every charger's reply topic; also publishes as a charger would."""
    r = ReplyListener(mosquitto)
    yield r
    r.close()

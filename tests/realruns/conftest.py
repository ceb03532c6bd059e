import pytest


@pytest.fixture(autouse=True)
def private_runtime_dir(tmp_path, monkeypatch):
    """Every test's sockets in a fresh user-only folder (never the user's real one)."""
    d = tmp_path / "run"
    monkeypatch.setenv("OPTIMLAB_RUNTIME_DIR", str(d))
    return d

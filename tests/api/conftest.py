"""Fixtures of the API PLM tests: a fault-injecting stub server and a real llama.cpp server.

The real server (`tests/api/llama_server.py`: xllamacpp serving SmolLM2-135M-Instruct) runs in
a subprocess on 127.0.0.1 with a free port, once per test session. xllamacpp is a test
dependency (requirements.txt): without it these tests fail, they are not skipped.
"""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys
import time

import pytest

from tests.api.stub_server import StubServer

HERE = pathlib.Path(__file__).resolve().parent
#: A key that must never appear in a file, a log line or an error message.
SENTINEL_KEY = "sk-sentinel-5f1d0c9e7a2b4c3d"


@pytest.fixture
def api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SENTINEL_KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    return SENTINEL_KEY


@pytest.fixture
def stub(api_key):
    server = StubServer()
    yield server
    server.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    """Base URL of a running llama.cpp server (model alias "smollm2")."""
    import xllamacpp  # noqa: F401  (fails loudly where the test dependency is missing)

    port = free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "llama_server.py"), "--port", str(port)],
            stdout=subprocess.PIPE,
            stderr=err,
            env={**os.environ, "PYTHONPATH": str(HERE.parents[1])},
        )
    try:
        line = proc.stdout.readline().decode()
        if not line.startswith("ready"):
            time.sleep(0.5)
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the llama.cpp server did not start: {line!r}\n{tail}")
        yield line.split()[1]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

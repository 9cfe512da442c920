"""llama-cpp-python's OpenAI-compatible server on 127.0.0.1, started by a test (through t3edge's
launcher, which applies the llama.cpp backend's load settings)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def llama_server(args: list[str], log_path: Path, start_limit_s: float = 120) -> Iterator[str]:
    """Serve `--model ...` (and any other server arguments); yield the base URL `.../v1`."""
    port = free_port()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "t3edge.backends.llama_server", *args, "--host", "127.0.0.1",
             "--port", str(port), "--n_threads", "2"], stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + start_limit_s
        while True:
            try:
                urllib.request.urlopen(url + "/models", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    raise RuntimeError(f"llama_cpp.server did not start: {log_path.read_text()[-2000:]}") from None
                time.sleep(0.3)
        try:
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=30)

"""Helpers shared by several test modules (on ``sys.path`` through pytest's ``pythonpath = ["tests"]``)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import gymnasium as gym
import numpy as np

from blox_env.space import SubSpace

#: The 125-model space (5 blocks per stage) of the synthetic store with blockwise tables (``blockwise_path``).
BLOCKWISE_SPACE = SubSpace(((0, 9, 21, 30, 44), (1, 10, 12, 36, 40), (2, 11, 23, 44, 5)))


def interruptible() -> None:
    """``preexec_fn`` of a child a test sends SIGINT: Ctrl-C as in a terminal, even when the test run itself was
    started in the background (a shell starts background jobs with SIGINT ignored, and children inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def play(env: gym.Env, local: tuple[int, int, int]) -> tuple[float, bool, bool, dict]:
    """One episode choosing ``local`` (either env id); returns the last step's reward, terminated, truncated, info."""
    if env.unwrapped.spec.id == "BloxOneShot-v0":
        _, r, term, trunc, info = env.step(np.array(local))
        return r, term, trunc, info
    for a in local:
        _, r, term, trunc, info = env.step(a)
        if term or trunc:
            break
    return r, term, trunc, info


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: Any


@contextmanager
def local_http_server(handler: type[BaseHTTPRequestHandler], state: Any) -> Iterator[tuple[str, Any]]:
    """A threaded HTTP server on 127.0.0.1 (ephemeral port) with ``state`` on ``self.server.state``.

    Yields its base URL and the state; shut down with a bounded join afterwards.
    """
    httpd = _Server(("127.0.0.1", 0), handler)
    httpd.state = state
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)

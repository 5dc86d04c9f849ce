"""`longlab lab` (what `make lab` runs): a link that works the moment it is printed, also when 8888 is taken.

Runs the real command as a newcomer would, with port 8888 held by a listening socket (or by whatever already
holds it), reads the printed link, and GETs it: 200 from our server with our token. A forced busy port is a
clear error. Jupyter's runtime/config dirs point into tmp_path, so nothing of the user's is touched.
"""
from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from longlab.commands import lab

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"http://127\.0\.0\.1:(\d+)/lab/tree/(\S+)\?token=(\w+)")


@pytest.fixture
def workspace(tmp_path):
    pytest.importorskip("jupyterlab", reason="jupyterlab is not installed")
    root = tmp_path / "root"
    (root / "notebooks").mkdir(parents=True)
    (root / "notebooks" / "00_tour.ipynb").write_text(
        '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    env = {k: v for k, v in os.environ.items() if k != "LAB_PORT"}
    env.update(JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return root, env


def _start(root, env, log=subprocess.PIPE):
    cmd = [sys.executable, "-m", "longlab.cli", "lab", "--no-browser"]
    return subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=log, text=True,
                            start_new_session=True)


def _lines(stream):
    """A queue that receives the stream's lines as they come (None at the end)."""
    out = queue.Queue()

    def pump():
        for line in stream:
            out.put(line)
        out.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return out


def _stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # the command passes it on; Jupyter shuts its kernels down
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # our own session: the command and the Jupyter it started
            proc.wait(timeout=10)


def _hold(port):
    """A listening socket on 127.0.0.1:port, or None when something else already holds the port."""
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        s.close()
        return None
    s.listen()
    return s


def test_busy_8888_gives_a_working_link_on_another_port(workspace, tmp_path):
    root, env = workspace
    holder = _hold(lab.PREFERRED_PORT)
    assert not lab.port_is_free(lab.PREFERRED_PORT)
    log = open(tmp_path / "jupyter.log", "w")
    proc = _start(root, env, log)
    stdout = _lines(proc.stdout)
    try:
        printed, deadline = [], time.monotonic() + 120
        while not any(LINK.search(line) for line in printed):
            try:
                line = stdout.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                log.flush()
                pytest.fail(f"no link within 120 s (exit {proc.poll()}):\n{''.join(printed)}\n"
                            f"{(tmp_path / 'jupyter.log').read_text()[-3000:]}")
            printed.append(line)
        assert any("8888 is busy" in line for line in printed)
        port, path, token = LINK.search("".join(printed)).groups()
        assert int(port) != lab.PREFERRED_PORT and path == "notebooks/00_tour.ipynb"
        # the link answers at once: no retry, no sleep
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/lab/tree/{path}?token={token}", timeout=30) as page:
            assert page.status == 200 and b"JupyterLab" in page.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents/{path}?token={token}", timeout=30) as nb:
            assert nb.status == 200
    finally:
        _stop(proc)
        log.close()
        if holder:
            holder.close()
    assert proc.returncode == 0, (tmp_path / "jupyter.log").read_text()[-3000:]


def test_a_forced_busy_port_is_a_clear_error(workspace):
    root, env = workspace
    holder = _hold(0)
    port = holder.getsockname()[1]
    try:
        proc = _start(root, {**env, "LAB_PORT": str(port)})
        out, err = proc.communicate(timeout=60)
    finally:
        holder.close()
    assert proc.returncode == 1 and f"port {port} is busy" in err and "unset LAB_PORT" in err and "http" not in out


@pytest.mark.parametrize("value, message", [("abc", "port number"), ("70000", "1..65535")])
def test_bad_lab_port(value, message, monkeypatch):
    monkeypatch.setenv("LAB_PORT", value)
    args = type("Args", (), {"port": None})()
    with pytest.raises(ValueError, match=message):
        lab.forced_port(args)


def test_port_choice(monkeypatch):
    monkeypatch.delenv("LAB_PORT", raising=False)
    assert lab.forced_port(type("Args", (), {"port": None})()) is None
    assert lab.forced_port(type("Args", (), {"port": 9123})()) == 9123
    monkeypatch.setenv("LAB_PORT", "9000")
    assert lab.forced_port(type("Args", (), {"port": None})()) == 9000

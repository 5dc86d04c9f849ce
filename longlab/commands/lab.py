"""`longlab lab`: start JupyterLab on the tour and print its link once the server answers.

The port: --port (or the LAB_PORT environment variable) forces one, and a busy forced port is an error.
Otherwise JupyterLab starts at 8888 and, when 8888 is taken (another Jupyter is a common case), moves on to a
free port by itself. The link is printed only after the server has answered a request, with the port it really
got and a fresh token, so it works the moment it appears. `make lab` runs this command.

Example:
    longlab lab                     # 8888, or the next free port
    LAB_PORT=9000 longlab lab       # exactly 9000
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

NAME = "lab"
HELP = "start JupyterLab on the tour; the link is printed once the server answers (free port if 8888 is busy)"

PREFERRED_PORT = 8888
HOST = "127.0.0.1"


def register(parser) -> None:
    parser.add_argument("--port", type=int, default=None,
                        help="use exactly this port (default: $LAB_PORT if set, else 8888 or the next free one)")
    parser.add_argument("--notebook", default="notebooks/00_tour.ipynb",
                        help="notebook to open, relative to --root (default: the tour)")
    parser.add_argument("--root", default=".", help="folder JupyterLab serves (default: the current directory)")
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser window")


def forced_port(args) -> int | None:
    """--port, else $LAB_PORT, else None (free choice). Raises ValueError on a value that is not a port."""
    raw = args.port if args.port is not None else os.environ.get("LAB_PORT", "").strip() or None
    if raw is None:
        return None
    try:
        port = int(raw)
    except ValueError:
        raise ValueError(f"LAB_PORT must be a port number, got {raw!r}; unset it to pick a free port") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be in 1..65535, got {port}; pass another --port or unset LAB_PORT")
    return port


def port_is_free(port: int, host: str = HOST) -> bool:
    """True when nothing listens on host:port (a bind succeeds)."""
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def server_port(pid: int, runtime_dir: Path) -> int | None:
    """The port the Jupyter server with process id `pid` bound, from the jpserver-PID.json it writes once
    listening; None while that file does not exist yet."""
    info = runtime_dir / f"jpserver-{pid}.json"
    try:
        return int(json.loads(info.read_text())["port"])
    except (OSError, ValueError, KeyError):
        return None


def answers(port: int, token: str) -> bool:
    """True when the server on `port` answers its status API with our token."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/api/status?token={token}", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def jupyter_command(args, port: int | None, token: str) -> list[str]:
    cmd = [sys.executable, "-m", "jupyterlab", args.notebook, f"--ServerApp.ip={HOST}",
           f"--ServerApp.port={port or PREFERRED_PORT}", f"--ServerApp.port_retries={0 if port else 50}",
           f"--IdentityProvider.token={token}", "--LabApp.news_url=None",
           f"--ServerApp.root_dir={Path(args.root).resolve()}"]
    if args.no_browser:
        cmd.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # containers often run as root; Jupyter refuses unless told
        cmd.append("--allow-root")
    return cmd


def main(args) -> int:
    from jupyter_core.paths import jupyter_runtime_dir

    try:
        port = forced_port(args)
    except ValueError as err:
        print(f"longlab lab: {err}", file=sys.stderr)
        return 2
    if port is not None and not port_is_free(port):
        print(f"longlab lab: port {port} is busy (forced by --port or LAB_PORT). Stop what uses it, choose "
              "another port, or unset LAB_PORT to let longlab pick a free one.", file=sys.stderr)
        return 1
    if port is None and not port_is_free(PREFERRED_PORT):
        print(f"longlab lab: port {PREFERRED_PORT} is busy; JupyterLab will take the next free port.", flush=True)
    token = secrets.token_hex(24)
    proc = subprocess.Popen(jupyter_command(args, port, token))
    # Ctrl-C reaches JupyterLab too (same process group); it decides whether to stop, and we wait for it.
    signal.signal(signal.SIGINT, lambda *_: None)
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    runtime, announced, since = Path(jupyter_runtime_dir()), False, time.monotonic()
    while proc.poll() is None:
        if not announced:
            got = server_port(proc.pid, runtime)
            if got and answers(got, token):
                print(f"\nlonglab tour: http://{HOST}:{got}/lab/tree/{args.notebook}?token={token}\n", flush=True)
                announced = True
                continue
            if time.monotonic() - since > 60:
                print("longlab lab: JupyterLab is still starting (a busy machine); the link follows.", flush=True)
                since = float("inf")
        try:
            proc.wait(timeout=0.3)
        except subprocess.TimeoutExpired:
            pass
    if not announced and proc.returncode not in (0, -signal.SIGINT, -signal.SIGTERM):
        print(f"longlab lab: JupyterLab exited with status {proc.returncode} before it answered (its messages are "
              "above).", file=sys.stderr)
    return proc.returncode if proc.returncode > 0 else 0

"""Real services for the tests: a PostgreSQL server, headless Chromium, a uvicorn server.

Each is found on this machine (Debian's packages, installed by ``scripts/system-deps.sh``, which
``make test`` runs). Where one is missing, its tests are skipped with the reason — unless
CASTINSPECT_REQUIRE_SYSTEM_TESTS=1 (set by ``make test``, so CI never passes by skipping).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

REQUIRED = os.environ.get("CASTINSPECT_REQUIRE_SYSTEM_TESTS") == "1"
ROOT = Path(__file__).resolve().parents[1]


def benchmark(name: str):
    """A script of benchmarks/ as a module (the load test's server and clients, for example)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"{reason} (CASTINSPECT_REQUIRE_SYSTEM_TESTS=1: run scripts/system-deps.sh)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout: float = 30.0) -> None:
    """Poll ``condition`` until it holds, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.05)


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port} after {timeout} s")


class PostgresServer:
    """A throw-away PostgreSQL cluster in a temporary folder, on a free loopback port.

    initdb refuses to run as root, so as root the cluster belongs to the ``postgres`` user that
    Debian's package creates."""

    def __init__(self) -> None:
        bindirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not bindirs or not os.path.exists(os.path.join(bindirs[-1], "initdb")):
            unavailable("PostgreSQL server binaries not found (Debian package postgresql)")
        try:
            import psycopg  # noqa: F401
        except ImportError:
            unavailable("psycopg not installed (pip install 'castinspect[postgres]')")
        self.bin = bindirs[-1]
        self.dir = Path(tempfile.mkdtemp(prefix="castinspect-pg-"))
        self.port = free_port()
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                unavailable("running as root and no 'postgres' user to own the test cluster")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            self.prefix = ["runuser", "-u", "postgres", "--"]
        self.data = self.dir / "data"
        self._run("initdb", "-D", str(self.data), "-U", "castinspect", "--auth=trust", "-E", "UTF8")
        self.start()
        self._n = 0

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "server.log"), "-w", "-t", "60", "-o",
                  f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1", "start")

    def halt(self) -> None:
        """Stop the server (fast shutdown: open connections are cut), keeping its data."""
        subprocess.run([*self.prefix, os.path.join(self.bin, "pg_ctl"), "-D", str(self.data), "-m", "fast",
                        "-w", "stop"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.dir)

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self.prefix, os.path.join(self.bin, tool), *args], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=self.dir)

    def new_database(self) -> str:
        """A fresh, empty database on this server; its URL."""
        import psycopg

        self._n += 1
        name = f"castinspect_test_{self._n}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def url(self, database: str) -> str:
        return f"postgresql://castinspect@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        self.halt()
        shutil.rmtree(self.dir, ignore_errors=True)


class MosquittoServer:
    """A Mosquitto broker on a free loopback port, its sessions persisted in a temporary folder
    (so that a subscriber's queued messages survive ``restart``)."""

    def __init__(self) -> None:
        self.binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
        if not self.binary:
            unavailable("mosquitto not found (Debian package mosquitto)")
        try:
            import paho.mqtt.client  # noqa: F401
        except ImportError:
            unavailable("paho-mqtt not installed")
        self.dir = Path(tempfile.mkdtemp(prefix="castinspect-mqtt-"))
        self.port = free_port()
        (self.dir / "mosquitto.conf").write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {self.dir}/\nautosave_interval 1\n")
        if os.geteuid() == 0:
            shutil.chown(self.dir, "mosquitto", "mosquitto") if _user("mosquitto") else None
        self.proc = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen([self.binary, "-c", str(self.dir / "mosquitto.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for_port(self.port, 10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: the sessions are saved
            self.proc.wait(10)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def chromium_driver():
    """Headless Chromium through chromedriver, both from Debian, with nothing fetched from the net."""
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not browser or not driver:
        unavailable("chromium and chromedriver not found (Debian packages chromium, chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        unavailable("selenium not installed")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1200,900",
                 f"--user-data-dir={tempfile.mkdtemp(prefix='castinspect-chromium-')}"):
        options.add_argument(flag)
    # An explicit driver path: Selenium Manager would otherwise try to download one.
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


class ThreadedServer:
    """The real app on uvicorn, in a thread of the test process, on a free loopback port."""

    def __init__(self, app, limits=None) -> None:
        import uvicorn

        from castinspect.station.app import uvicorn_config

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn_config(app, "127.0.0.1", self.port, limits))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_for_port(self.port)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)

"""Shared fixture: the mock upstream and `customs serve` on free loopback ports, with the example
config pointed at the mock. Uses the debug binaries unless CUSTOMS_BIN_DIR says otherwise."""

import dataclasses
import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN_DIR = pathlib.Path(os.environ.get("CUSTOMS_BIN_DIR", ROOT / "target" / "debug"))
UPSTREAM_KEY = "sdk-test-upstream-key"


@dataclasses.dataclass
class Gateway:
    base: str
    admin: str


def start(args, env=None, cwd=None):
    """Starts a process whose first stdout line is 'NAME listening on http://ADDR ...'."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=cwd)
    line = proc.stdout.readline()
    if "listening on http://" not in line:
        proc.kill()
        raise RuntimeError(f"{args[0]} did not start: {line!r}")
    return proc, line


@pytest.fixture(scope="session")
def gateway(tmp_path_factory):
    mock, line = start([str(BIN_DIR / "customs-mock-upstream"), "--listen", "127.0.0.1:0", "--api-key", UPSTREAM_KEY])
    mock_addr = line.split("http://", 1)[1].split()[0]
    config = tmp_path_factory.mktemp("config")
    for f in (ROOT / "config").iterdir():
        (config / f.name).write_text(f.read_text().replace("127.0.0.1:8081", mock_addr))
    env = dict(os.environ, CUSTOMS_UPSTREAM_KEY=UPSTREAM_KEY)
    gw, line = start(
        [str(BIN_DIR / "customs"), "serve", "--config", str(config), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
        env=env,
        cwd=config,  # the example's audit trail and kill-switch state go beside the copied config
    )
    # "customs listening on http://A (admin http://B)"
    parts = line.split("http://")
    yield Gateway(base="http://" + parts[1].split()[0], admin="http://" + parts[2].rstrip(")\n"))
    for p in (gw, mock):
        p.terminate()
        p.wait(timeout=30)
    shutil.rmtree(config, ignore_errors=True)

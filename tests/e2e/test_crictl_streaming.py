"""crictl's streaming commands against stowage-cri, end to end: exec with and without a tty
(over SPDY and WebSocket), attach to a container's output and stdin, and port-forward to an
nginx in a pod's network namespace."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import select
import socket
import struct
import subprocess
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.harness import TOP, StowageDaemon, cni_network, registry, stowage_daemon, wait_for
from tests.images.publish import publish_catalog

pytestmark = [pytest.mark.root, pytest.mark.registry, pytest.mark.daemon]

CRICTL = os.path.join(TOP, ".tools", "bin", "crictl")
BUSYBOX = "registry.k8s.io/e2e-test-images/busybox:1.29-2"
NGINX = "registry.k8s.io/e2e-test-images/nginx:1.14-2"


@pytest.fixture(scope="module")
def daemon() -> Iterator[StowageDaemon]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    with registry() as reg, cni_network("10.205.0.0/16", "stwstr0") as net:
        publish_catalog(reg.url)
        with stowage_daemon(reg.url, net) as d:
            for image in (BUSYBOX, NGINX):
                crictl(d, "pull", image)
            yield d


def run(d: StowageDaemon, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CRICTL, "--image-endpoint", d.endpoint, "--runtime-endpoint", d.endpoint, *args],
        capture_output=True,
        text=True,
        input=stdin,
        check=False,
        timeout=60,
    )


def crictl(d: StowageDaemon, *args: str) -> str:
    res = run(d, *args)
    if res.returncode != 0:
        raise AssertionError(f"crictl {args} failed: {res.stderr}")
    return res.stdout


class Pod:
    def __init__(self, d: StowageDaemon, tmp: Path, name: str) -> None:
        self.d, self.tmp, self.name = d, tmp, name
        self.cfg = tmp / f"{name}-pod.json"
        self.cfg.write_text(
            json.dumps(
                {
                    "metadata": {"name": name, "namespace": "stream", "uid": f"uid-{name}"},
                    "log_directory": str(tmp / "logs"),
                }
            )
        )
        self.id = crictl(d, "runp", str(self.cfg)).strip()

    def container(self, image: str, command: list[str] | None = None, **extra: object) -> str:
        cfg: dict[str, object] = {"metadata": {"name": f"c{time.monotonic_ns()}"}}
        cfg["image"] = {"image": image}
        cfg["log_path"] = "c.log"
        if command is not None:
            cfg["command"] = command
        cfg.update(extra)
        path = self.tmp / f"{self.name}-ctr.json"
        path.write_text(json.dumps(cfg))
        return crictl(self.d, "create", self.id, str(path), str(self.cfg)).strip()


@pytest.fixture
def pod(daemon: StowageDaemon, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Pod]:
    # The pod's name becomes its hostname: letters, digits and dashes only.
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    p = Pod(daemon, tmp_path, name)
    yield p
    run(daemon, "rmp", "-f", p.id)


def sleeper(pod: Pod) -> str:
    ctr = pod.container(BUSYBOX, ["sleep", "3600"])
    crictl(pod.d, "start", ctr)
    return ctr


@pytest.mark.parametrize("transport", ["spdy", "websocket"])
def test_exec_without_tty(pod: Pod, transport: str) -> None:
    ctr = sleeper(pod)
    res = run(
        pod.d,
        "exec",
        "--transport",
        transport,
        ctr,
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    )
    assert res.stdout == "out\n"
    assert "err\n" in res.stderr
    # crictl exits 1 on any failure; the exit code reaches it in the session's status.
    assert res.returncode == 1
    assert "command terminated with exit code 3" in res.stderr
    res = run(pod.d, "exec", "--transport", transport, ctr, "true")
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("transport", ["spdy", "websocket"])
def test_exec_with_stdin(pod: Pod, transport: str) -> None:
    ctr = sleeper(pod)
    data = "".join(f"line {i}\n" for i in range(2000))
    res = run(pod.d, "exec", "-i", "--transport", transport, ctr, "cat", stdin=data)
    assert res.returncode == 0, res.stderr
    assert res.stdout == data


def _in_pty(argv: list[str], rows: int, cols: int, timeout: float = 30) -> tuple[int, str]:
    """Runs argv with a terminal of rows x cols as its stdio; returns (status, output)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        return proc.wait(timeout=10), out.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


@pytest.mark.parametrize("transport", ["spdy", "websocket"])
def test_exec_with_tty_sees_a_terminal_of_the_clients_size(pod: Pod, transport: str) -> None:
    ctr = sleeper(pod)
    base = [CRICTL, "--runtime-endpoint", pod.d.endpoint, "exec", "-it", "--transport", transport]
    # The client sends its size right after connecting; give it a moment to arrive.
    script = "sleep 1; tty; stty size; exit 4"
    status, out = _in_pty([*base, ctr, "sh", "-c", script], rows=33, cols=101)
    assert "/dev/pts/" in out
    assert "33 101" in out
    assert "command terminated with exit code 4" in out
    assert status == 1


def test_exec_into_a_stopped_container_is_refused(pod: Pod) -> None:
    ctr = pod.container(BUSYBOX, ["true"])
    res = run(pod.d, "exec", ctr, "true")
    assert res.returncode != 0
    assert "not running" in res.stderr


@pytest.mark.parametrize("transport", ["spdy", "websocket"])
def test_attach_follows_output_until_the_container_exits(pod: Pod, transport: str) -> None:
    ctr = pod.container(
        BUSYBOX, ["sh", "-c", "sleep 2; echo attached-out; echo attached-err >&2; sleep 1"]
    )
    crictl(pod.d, "start", ctr)
    res = run(pod.d, "attach", "--transport", transport, ctr)
    assert res.returncode == 0, res.stderr
    assert "attached-out" in res.stdout
    assert "attached-err" in res.stderr


def test_attach_with_stdin(pod: Pod) -> None:
    ctr = pod.container(BUSYBOX, ["sh"], stdin=True, stdin_once=True)
    crictl(pod.d, "start", ctr)
    res = run(pod.d, "attach", "-i", ctr, stdin="echo hello from stdin; echo bye >&2\n")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "hello from stdin\n"
    assert "bye" in res.stderr

    # stdin_once: the end of our stdin was the end of the shell's.
    def exited() -> bool:
        st = json.loads(crictl(pod.d, "inspect", "-o", "json", ctr))["status"]
        return bool(st["state"] == "CONTAINER_EXITED")

    wait_for(exited, 10, "the shell to exit")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def port_forward(d: StowageDaemon, pod_id: str, spec: str, transport: str) -> Iterator[None]:
    proc = subprocess.Popen(
        [
            CRICTL,
            "--runtime-endpoint",
            d.endpoint,
            "port-forward",
            "--transport",
            transport,
            pod_id,
            spec,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        seen = ""
        while "Forwarding from" not in seen:
            line = proc.stdout.readline()
            assert line, f"crictl port-forward ended: {seen}"
            seen += line
        yield
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.parametrize("transport", ["spdy", "websocket"])
def test_port_forward_reaches_nginx_in_the_pod(pod: Pod, transport: str) -> None:
    ctr = pod.container(NGINX)
    crictl(pod.d, "start", ctr)
    port = _free_port()
    with port_forward(pod.d, pod.id, f"{port}:80", transport):

        def serves() -> bool:
            return httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200

        wait_for(serves, 20, "nginx through the port forward")
        # Several connections, one after the other and side by side.
        with httpx.Client(timeout=5) as client:
            for _ in range(5):
                assert "nginx" in client.get(f"http://127.0.0.1:{port}/").text.lower()
        for _ in range(3):
            with httpx.Client(timeout=5) as client:
                assert client.get(f"http://127.0.0.1:{port}/").status_code == 200


def test_port_forward_to_a_closed_port_fails_that_connection(pod: Pod) -> None:
    sleeper(pod)
    port = _free_port()
    with (
        port_forward(pod.d, pod.id, f"{port}:81", "spdy"),
        socket.create_connection(("127.0.0.1", port), timeout=10) as s,
    ):
        s.settimeout(10)
        try:
            got = s.recv(100)
        except ConnectionResetError:
            got = b""
        assert got == b""  # closed, nothing relayed

"""crictl against stowage-cri's runtime service, end to end: a pod on a CNI network, a busybox
container that logs, exec, stop, remove; and a daemon restart (kill -9) under a running
container."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import TOP, StowageDaemon, cni_network, registry, stowage_daemon, wait_for
from tests.images.publish import publish_catalog

pytestmark = [pytest.mark.root, pytest.mark.registry, pytest.mark.daemon]

CRICTL = os.path.join(TOP, ".tools", "bin", "crictl")
BUSYBOX = "registry.k8s.io/e2e-test-images/busybox:1.29-2"


@pytest.fixture(scope="module")
def env() -> Iterator[tuple[str, str]]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    with registry() as reg, cni_network("10.204.0.0/16", "stwe2e0") as net:
        publish_catalog(reg.url)
        yield reg.url, net


@pytest.fixture
def daemon(env: tuple[str, str]) -> Iterator[StowageDaemon]:
    with stowage_daemon(env[0], env[1]) as d:
        yield d


def crictl(d: StowageDaemon, *args: str, check: bool = True) -> str:
    res = subprocess.run(
        [CRICTL, "--image-endpoint", d.endpoint, "--runtime-endpoint", d.endpoint, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if check and res.returncode != 0:
        raise AssertionError(f"crictl {args} failed: {res.stderr}")
    return res.stdout if check else res.stdout + res.stderr


def _configs(tmp: Path, name: str, command: list[str]) -> tuple[str, str]:
    pod = {
        "metadata": {"name": name, "namespace": "e2e", "uid": f"uid-{name}", "attempt": 0},
        "log_directory": str(tmp / "logs"),
        "hostname": name,
        "linux": {"security_context": {"namespace_options": {"pid": 1}}},
    }
    ctr = {
        "metadata": {"name": "main"},
        "image": {"image": BUSYBOX},
        "command": command,
        "log_path": "main.log",
    }
    (tmp / "pod.json").write_text(json.dumps(pod))
    (tmp / "ctr.json").write_text(json.dumps(ctr))
    return str(tmp / "pod.json"), str(tmp / "ctr.json")


def test_pod_lifecycle(daemon: StowageDaemon, tmp_path: Path) -> None:
    pod_cfg, ctr_cfg = _configs(
        tmp_path, "life", ["sh", "-c", "echo hello from stowage; hostname; sleep 3600"]
    )
    crictl(daemon, "pull", BUSYBOX)
    pod = crictl(daemon, "runp", pod_cfg).strip()
    status = json.loads(crictl(daemon, "inspectp", "-o", "json", pod))
    assert status["status"]["state"] == "SANDBOX_READY"
    ip = status["status"]["network"]["ip"]
    assert ip.startswith("10.204.")

    ctr = crictl(daemon, "create", pod, ctr_cfg, pod_cfg).strip()
    crictl(daemon, "start", ctr)
    wait_for(lambda: "hello from stowage" in crictl(daemon, "logs", ctr), 10, "container log")
    assert "life" in crictl(daemon, "logs", ctr)
    log_file = tmp_path / "logs" / "main.log"
    first = log_file.read_text().splitlines()[0].split(" ", 3)
    assert first[1] == "stdout"
    assert first[2] == "F"
    assert first[3] == "hello from stowage"

    out = crictl(daemon, "exec", "-s", ctr, "sh", "-c", "echo exec-ok; ip addr show eth0")
    assert "exec-ok" in out
    assert ip in out
    res = subprocess.run(
        [CRICTL, "--runtime-endpoint", daemon.endpoint, "exec", "-s", ctr, "sh", "-c", "exit 7"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode != 0
    assert "exited with 7" in res.stderr

    listed = json.loads(crictl(daemon, "ps", "-o", "json"))["containers"]
    assert [c["id"] for c in listed] == [ctr]
    assert listed[0]["state"] == "CONTAINER_RUNNING"

    crictl(daemon, "stop", "-t", "2", ctr)
    st = json.loads(crictl(daemon, "inspect", "-o", "json", ctr))["status"]
    assert st["state"] == "CONTAINER_EXITED"
    assert st["exitCode"] == 137  # sh ignores SIGTERM as pid 1: killed after the timeout

    cgroup = json.loads(crictl(daemon, "inspect", "-o", "json", ctr))["info"]["runtimeSpec"][
        "linux"
    ]["cgroupsPath"]
    assert cgroup == f"/{ctr}", "no cgroup_parent: the container's cgroup is at the top"
    crictl(daemon, "stopp", pod)
    crictl(daemon, "rmp", pod)
    assert json.loads(crictl(daemon, "pods", "-o", "json"))["items"] == []
    assert not any("stwe2e0" in line and ip in line for line in _ip_rules())
    for hierarchy in ("cpu", "memory", "pids", "devices", "freezer"):
        assert not os.path.exists(f"/sys/fs/cgroup/{hierarchy}/{ctr}"), "no cgroup is left"


def _ip_rules() -> list[str]:
    return subprocess.run(
        ["iptables-save"], capture_output=True, text=True, check=False
    ).stdout.splitlines()


def test_exit_code_and_reason(daemon: StowageDaemon, tmp_path: Path) -> None:
    pod_cfg, ctr_cfg = _configs(tmp_path, "exits", ["sh", "-c", "echo bye; exit 3"])
    crictl(daemon, "pull", BUSYBOX)
    pod = crictl(daemon, "runp", pod_cfg).strip()
    ctr = crictl(daemon, "create", pod, ctr_cfg, pod_cfg).strip()
    crictl(daemon, "start", ctr)

    def exited() -> bool:
        st = json.loads(crictl(daemon, "inspect", "-o", "json", ctr))["status"]
        return bool(st["state"] == "CONTAINER_EXITED")

    wait_for(exited, 10, "container exit")
    st = json.loads(crictl(daemon, "inspect", "-o", "json", ctr))["status"]
    assert st["exitCode"] == 3
    assert st["reason"] == "Error"
    crictl(daemon, "rmp", "-f", pod)


def test_containers_survive_a_daemon_kill(env: tuple[str, str], tmp_path: Path) -> None:
    pod_cfg, ctr_cfg = _configs(
        tmp_path, "survivor", ["sh", "-c", "while true; do echo tick; sleep 0.2; done"]
    )
    with stowage_daemon(env[0], env[1]) as d:
        crictl(d, "pull", BUSYBOX)
        pod = crictl(d, "runp", pod_cfg).strip()
        ctr = crictl(d, "create", pod, ctr_cfg, pod_cfg).strip()
        crictl(d, "start", ctr)
        d.kill()
        log_file = tmp_path / "logs" / "main.log"
        before = len(log_file.read_text().splitlines())
        time.sleep(1)
        assert len(log_file.read_text().splitlines()) > before  # still running, still logging
        d.start()
        st = json.loads(crictl(d, "inspect", "-o", "json", ctr))["status"]
        assert st["state"] == "CONTAINER_RUNNING"
        crictl(d, "stop", "-t", "0", ctr)
        st = json.loads(crictl(d, "inspect", "-o", "json", ctr))["status"]
        assert st["state"] == "CONTAINER_EXITED"
        crictl(d, "rmp", "-f", pod)


def test_removing_an_image_in_use_keeps_the_container(
    daemon: StowageDaemon, tmp_path: Path
) -> None:
    pod_cfg, ctr_cfg = _configs(tmp_path, "inuse", ["sleep", "3600"])
    crictl(daemon, "pull", BUSYBOX)
    pod = crictl(daemon, "runp", pod_cfg).strip()
    ctr = crictl(daemon, "create", pod, ctr_cfg, pod_cfg).strip()
    crictl(daemon, "start", ctr)
    crictl(daemon, "rmi", BUSYBOX)  # as containerd: the image goes, its layers stay in use
    assert json.loads(crictl(daemon, "images", "-o", "json"))["images"] == []
    assert "still-here" in crictl(daemon, "exec", "-s", ctr, "sh", "-c", "echo still-here")
    st = json.loads(crictl(daemon, "inspect", "-o", "json", ctr))["status"]
    assert st["state"] == "CONTAINER_RUNNING"
    crictl(daemon, "rmp", "-f", pod)
    layers = Path(daemon.root) / "images" / "snapshots" / "layers"
    assert list(layers.iterdir()) == []  # freed once the container is gone


def test_restart_recovers_every_state_and_sweeps_leftovers(
    env: tuple[str, str], tmp_path: Path
) -> None:
    from cri_shim.netns import pin_namespaces

    pod_cfg, sleeper = _configs(tmp_path, "restart", ["sleep", "3600"])
    ctr = json.loads(Path(sleeper).read_text())
    quitter = tmp_path / "quitter.json"
    quitter.write_text(
        json.dumps(
            {
                **ctr,
                "metadata": {"name": "quitter"},
                "command": ["sh", "-c", "exit 3"],
                "log_path": "q.log",
            }
        )
    )
    waiter = tmp_path / "waiter.json"
    waiter.write_text(json.dumps({**ctr, "metadata": {"name": "waiter"}, "log_path": "w.log"}))
    with stowage_daemon(env[0], env[1]) as d:
        crictl(d, "pull", BUSYBOX)
        pod = crictl(d, "runp", pod_cfg).strip()
        ip = json.loads(crictl(d, "inspectp", "-o", "json", pod))["status"]["network"]["ip"]
        running = crictl(d, "create", pod, sleeper, pod_cfg).strip()
        crictl(d, "start", running)
        exited = crictl(d, "create", pod, str(quitter), pod_cfg).strip()
        crictl(d, "start", exited)
        created = crictl(d, "create", pod, str(waiter), pod_cfg).strip()

        def state(cid: str) -> dict[str, object]:
            return dict(json.loads(crictl(d, "inspect", "-o", "json", cid))["status"])

        wait_for(lambda: state(exited)["state"] == "CONTAINER_EXITED", 10, "exit")
        d.kill()
        # What a kill -9 halfway through RunPodSandbox or CreateContainer leaves behind.
        ghost = "f" * 64
        state_root = Path(d.state)
        pin_namespaces(
            str(state_root / "ns"),
            ghost,
            net=True,
            ipc=True,
            uts=True,
            hostname="ghost",
            helper=f"{TOP}/.tools/bin/stowage-pause",
        )
        (state_root / "pods" / ghost).mkdir()
        (state_root / "containers" / ghost / "rootfs").mkdir(parents=True)
        (state_root / "exits" / ghost).write_text("0")
        d.start()

        assert state(running)["state"] == "CONTAINER_RUNNING"
        assert state(exited)["state"] == "CONTAINER_EXITED"
        assert state(exited)["exitCode"] == 3
        assert state(created)["state"] == "CONTAINER_CREATED"
        crictl(d, "start", created)
        assert state(created)["state"] == "CONTAINER_RUNNING"
        status = json.loads(crictl(d, "inspectp", "-o", "json", pod))["status"]
        assert status["state"] == "SANDBOX_READY"
        assert status["network"]["ip"] == ip
        for leftover in ("ns", "pods", "containers", "exits"):
            assert not (state_root / leftover / ghost).exists(), leftover
        with open("/proc/self/mountinfo") as f:
            assert ghost not in f.read()
        crictl(d, "rmp", "-f", pod)
        with open("/proc/self/mountinfo") as f:
            assert pod not in f.read()


def test_container_events_stream(daemon: StowageDaemon, tmp_path: Path) -> None:
    import threading

    import grpc

    from cri_shim._pb import api_pb2 as pb
    from cri_shim._pb import api_pb2_grpc as pb_grpc

    pod_cfg, ctr_cfg = _configs(tmp_path, "events", ["sh", "-c", "sleep 0.5; exit 2"])
    crictl(daemon, "pull", BUSYBOX)
    channel = grpc.insecure_channel(daemon.endpoint)
    stream = pb_grpc.RuntimeServiceStub(channel).GetContainerEvents(pb.GetEventsRequest())
    got: list[tuple[str, int]] = []

    def read() -> None:
        for ev in stream:
            got.append((ev.container_id, ev.container_event_type))
            if ev.container_event_type == pb.CONTAINER_DELETED_EVENT:
                return

    reader = threading.Thread(target=read)
    reader.start()
    try:
        time.sleep(0.3)
        pod = crictl(daemon, "runp", pod_cfg).strip()
        ctr = crictl(daemon, "create", pod, ctr_cfg, pod_cfg).strip()
        crictl(daemon, "start", ctr)
        wait_for(lambda: (ctr, pb.CONTAINER_STOPPED_EVENT) in got, 10, "stopped event")
        crictl(daemon, "rm", ctr)
        reader.join(10)
        assert [t for c, t in got if c == ctr] == [
            pb.CONTAINER_CREATED_EVENT,
            pb.CONTAINER_STARTED_EVENT,
            pb.CONTAINER_STOPPED_EVENT,
            pb.CONTAINER_DELETED_EVENT,
        ]
        crictl(daemon, "rmp", "-f", pod)
    finally:
        stream.cancel()
        channel.close()


def test_own_cni_plugin_survives_a_restart_and_gc(env: tuple[str, str], tmp_path: Path) -> None:
    from tests.harness import stowage_cni_network

    pod_cfg, ctr_cfg = _configs(tmp_path, "owncni", ["sleep", "3600"])
    with stowage_cni_network() as net, stowage_daemon(env[0], net) as d:
        crictl(d, "pull", BUSYBOX)
        pod = crictl(d, "runp", pod_cfg).strip()
        ip = json.loads(crictl(d, "inspectp", "-o", "json", pod))["status"]["network"]["ip"]
        assert ip.startswith("10.206.")
        ipam = Path(net).parent / "ipam" / "stowage-own"
        assert (ipam / ip).exists()
        d.kill()
        d.start()  # start-up runs the CNI GC verb with this pod as a valid attachment
        assert (ipam / ip).exists()
        ctr = crictl(d, "create", pod, ctr_cfg, pod_cfg).strip()
        crictl(d, "start", ctr)
        assert ip in crictl(d, "exec", "-s", ctr, "ip", "-4", "addr", "show", "eth0")
        crictl(d, "rmp", "-f", pod)
        assert not (ipam / ip).exists()


def _netns_of(d: StowageDaemon, pod: str) -> str:
    # crictl prints our verbose "info" entry, parsed, as the output's "info"
    return str(json.loads(crictl(d, "inspectp", "-o", "json", pod))["info"]["netns"])


def test_a_pod_whose_network_broke_while_we_were_down_is_not_ready(
    env: tuple[str, str], tmp_path: Path
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    intact_cfg, _ = _configs(tmp_path / "a", "intact", ["sleep", "3600"])
    broken_cfg, _ = _configs(tmp_path / "b", "broken", ["sleep", "3600"])
    ipam = Path(env[1]).parent / "ipam" / "stowage-test"
    with stowage_daemon(env[0], env[1]) as d:
        intact = crictl(d, "runp", intact_cfg).strip()
        broken = crictl(d, "runp", broken_cfg).strip()
        inspected = json.loads(crictl(d, "inspectp", "-o", "json", broken))
        assert inspected["info"]["networkCheck"] == {"ok": True, "error": ""}
        ip = inspected["status"]["network"]["ip"]
        assert (ipam / ip).exists()
        netns = _netns_of(d, broken)
        d.kill()
        # While the daemon is down, the pod loses its interface (and its veth pair with it).
        subprocess.run(["nsenter", f"--net={netns}", "ip", "link", "del", "eth0"], check=True)
        d.start()
        wait_for(
            lambda: "pod networks checked" in Path(d.log_path).read_text(),
            60,
            "the start-up CNI CHECK pass",
        )
        states = {
            pod: json.loads(crictl(d, "inspectp", "-o", "json", pod))["status"]["state"]
            for pod in (intact, broken)
        }
        assert states == {intact: "SANDBOX_READY", broken: "SANDBOX_NOTREADY"}
        check = json.loads(crictl(d, "inspectp", "-o", "json", broken))["info"]["networkCheck"]
        assert check["ok"] is False
        assert "eth0" in check["error"]
        # Its stop still runs DEL, with the cached config: the address goes back to the pool.
        crictl(d, "rmp", "-f", broken)
        assert not (ipam / ip).exists()
        crictl(d, "rmp", "-f", intact)


def _crun_can_run_here() -> bool:
    # crun refuses a hybrid cgroup host whose v2 hierarchy holds controllers (as this one's
    # holds hugetlb); runc does not mind.
    try:
        with open("/sys/fs/cgroup/unified/cgroup.controllers") as f:
            return not f.read().split()
    except FileNotFoundError:
        return True


def test_runtime_handlers_from_the_config(
    env: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[runtime.handlers]\nrunc-b = "runc"\ncrun = "crun"\n')
    monkeypatch.setenv("STOWAGE_CONFIG", str(config))
    (tmp_path / "b").mkdir()
    (tmp_path / "c").mkdir()
    pod_cfg, ctr_cfg = _configs(tmp_path / "b", "handler-b", ["sleep", "3600"])
    crun_pod_cfg, crun_ctr_cfg = _configs(tmp_path / "c", "handler-crun", ["sleep", "3600"])
    with stowage_daemon(env[0], env[1]) as d:
        status = json.loads(crictl(d, "info", "-o", "json"))
        names = [h.get("name", "") for h in status["runtimeHandlers"]]
        assert names == ["", "crun", "runc", "runc-b"]
        unknown = crictl(d, "runp", "--runtime", "kata", pod_cfg, check=False)
        assert "no runtime handler 'kata'" in unknown
        crictl(d, "pull", BUSYBOX)

        pod = crictl(d, "runp", "--runtime", "runc-b", pod_cfg).strip()
        assert json.loads(crictl(d, "inspectp", "-o", "json", pod))["status"]["runtimeHandler"] == (
            "runc-b"
        )
        ctr = crictl(d, "create", pod, ctr_cfg, pod_cfg).strip()
        crictl(d, "start", ctr)
        own_root = os.path.join(d.state, "oci", "runc-b")
        listed = subprocess.run(
            ["runc", "--root", own_root, "list", "-q"], capture_output=True, text=True, check=True
        ).stdout.split()
        assert listed == [ctr], "the container runs under its handler's own runtime root"
        assert "ok" in crictl(d, "exec", "-s", ctr, "echo", "ok")
        crictl(d, "rmp", "-f", pod)
        assert not os.listdir(own_root)

        crun_pod = crictl(d, "runp", "--runtime", "crun", crun_pod_cfg).strip()
        crun_ctr = crictl(d, "create", crun_pod, crun_ctr_cfg, crun_pod_cfg).strip()
        started = subprocess.run(
            [CRICTL, "--runtime-endpoint", d.endpoint, "start", crun_ctr],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if _crun_can_run_here():
            assert started.returncode == 0, started.stderr
            state = json.loads(crictl(d, "inspect", "-o", "json", crun_ctr))["status"]["state"]
            assert state == "CONTAINER_RUNNING"
        else:
            # The runtime's own reason reaches the caller, and nothing is left behind.
            assert started.returncode != 0
            assert "hybrid mode not supported" in started.stderr
        crictl(d, "rmp", "-f", crun_pod)
        assert not os.listdir(os.path.join(d.state, "oci", "crun"))
        assert json.loads(crictl(d, "pods", "-o", "json"))["items"] == []


def test_update_runtime_config_writes_the_network_from_the_template(
    env: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import grpc

    from cri_shim._pb import api_pb2 as pb
    from cri_shim._pb import api_pb2_grpc as pb_grpc

    bridge = "stwtpl0"
    template = tmp_path / "template.conflist"
    template.write_text(
        json.dumps(
            {
                "cniVersion": "1.0.0",
                "name": "from-template",
                "plugins": [
                    {
                        "type": "bridge",
                        "bridge": bridge,
                        "isGateway": True,
                        "ipam": {
                            "type": "host-local",
                            "ranges": [[{"subnet": "{{.PodCIDR}}"}]],
                            "dataDir": str(tmp_path / "ipam"),
                        },
                    }
                ],
            }
        )
    )
    config = tmp_path / "config.toml"
    config.write_text(f'[cni]\nconf_template = "{template}"\nbin_dirs = ["/usr/lib/cni"]\n')
    monkeypatch.setenv("STOWAGE_CONFIG", str(config))
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    pod_cfg, _ = _configs(tmp_path, "templated", ["sleep", "3600"])
    try:
        with stowage_daemon(env[0], str(conf_dir)) as d:

            def network_ready() -> bool:
                conditions = json.loads(crictl(d, "info", "-o", "json"))["status"]["conditions"]
                return any(c["type"] == "NetworkReady" and c["status"] for c in conditions)

            assert not network_ready()
            channel = grpc.insecure_channel(d.endpoint)
            rt = pb_grpc.RuntimeServiceStub(channel)

            def update(cidr: str) -> None:
                rt.UpdateRuntimeConfig(
                    pb.UpdateRuntimeConfigRequest(
                        runtime_config=pb.RuntimeConfig(
                            network_config=pb.NetworkConfig(pod_cidr=cidr)
                        )
                    )
                )

            with pytest.raises(grpc.RpcError) as bad:
                update("10.207.0.0/33")
            assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert not os.listdir(conf_dir)
            update("10.207.0.0/24,fd00:207::/64")
            written = json.loads((conf_dir / "10-stowage-net.conflist").read_text())
            assert written["plugins"][0]["ipam"]["ranges"] == [[{"subnet": "10.207.0.0/24"}]]
            assert network_ready()
            update("10.208.0.0/24")  # a network exists now: it is left as it is
            assert "10.207.0.0/24" in (conf_dir / "10-stowage-net.conflist").read_text()

            pod = crictl(d, "runp", pod_cfg).strip()
            ip = json.loads(crictl(d, "inspectp", "-o", "json", pod))["status"]["network"]["ip"]
            assert ip.startswith("10.207.0.")
            crictl(d, "rmp", "-f", pod)
            channel.close()
    finally:
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)


def test_the_infra_process_of_a_shared_pid_pod_is_in_the_pods_cgroup(
    daemon: StowageDaemon, tmp_path: Path
) -> None:
    parent = f"stowage-e2e-pod{os.getpid()}"
    hierarchies = [
        h
        for h in ("cpu", "memory", "pids", "unified")
        if os.path.isfile(f"/sys/fs/cgroup/{h}/cgroup.procs")
    ]
    made = []
    try:
        for h in hierarchies:  # as the kubelet makes a pod's cgroup before RunPodSandbox
            os.mkdir(f"/sys/fs/cgroup/{h}/{parent}")
            made.append(f"/sys/fs/cgroup/{h}/{parent}")
        pod_cfg = tmp_path / "pod.json"
        pod_cfg.write_text(
            json.dumps(
                {
                    "metadata": {"name": "shared", "namespace": "e2e", "uid": "uid-shared"},
                    "log_directory": str(tmp_path / "logs"),
                    "linux": {
                        "cgroup_parent": f"/{parent}",
                        "security_context": {"namespace_options": {"pid": 0}},
                    },
                }
            )
        )
        pod = crictl(daemon, "runp", str(pod_cfg)).strip()
        for path in made:
            pids = Path(path, "cgroup.procs").read_text().split()
            assert len(pids) == 1, path
            assert Path(f"/proc/{pids[0]}/comm").read_text().strip() == "stowage-pause"
        crictl(daemon, "rmp", "-f", pod)
        for path in made:
            assert Path(path, "cgroup.procs").read_text() == ""
    finally:
        for path in made:
            wait_for(lambda p=path: not Path(p, "cgroup.procs").read_text(), 10, "an empty cgroup")
            os.rmdir(path)


def test_a_handler_removed_from_the_config_does_not_stop_the_daemon(
    env: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_b = tmp_path / "with-b.toml"
    with_b.write_text('[runtime.handlers]\nrunc-b = "runc"\n')
    without_b = tmp_path / "without-b.toml"
    without_b.write_text("[runtime.handlers]\n")
    pod_cfg, ctr_cfg = _configs(tmp_path, "gone-handler", ["sleep", "3600"])
    monkeypatch.setenv("STOWAGE_CONFIG", str(with_b))
    with stowage_daemon(env[0], env[1]) as d:
        crictl(d, "pull", BUSYBOX)
        pod = crictl(d, "runp", "--runtime", "runc-b", pod_cfg).strip()
        ctr = crictl(d, "create", pod, ctr_cfg, pod_cfg).strip()
        crictl(d, "start", ctr)
        d.kill()
        d.argv[d.argv.index("--config") + 1] = str(without_b)
        d.start()  # starts, and says why it cannot check that container
        assert "container left unchecked" in Path(d.log_path).read_text()
        assert "no runtime handler 'runc-b'" in crictl(d, "rm", "-f", ctr, check=False)
        d.kill()
        d.argv[d.argv.index("--config") + 1] = str(with_b)
        d.start()  # the handler is back: its container can be stopped and removed
        st = json.loads(crictl(d, "inspect", "-o", "json", ctr))["status"]
        assert st["state"] == "CONTAINER_RUNNING"
        crictl(d, "rmp", "-f", pod)

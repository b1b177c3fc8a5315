"""A stock kubelet (v1.36, ``.tools/bin/kubelet``) runs static pods on stowage-cri, with no API
server: a two-container pod with a shared emptyDir, restarts per restartPolicy, exec liveness
probes, the kubelet's own endpoints, and the withdrawal of every pod. The node and the checks
live in ``tests/e2e/kubelet_run.py`` (also ``make e2e-kubelet``).

The tests share one kubelet and run in file order, but each one adds the pods it needs, so any
of them also runs alone (``-k``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from tests.e2e.kubelet_run import (
    KUBELET,
    KubeletNode,
    check_kubelet_view,
    check_liveness_probe,
    check_restart_policy,
    check_shared_pid_namespace,
    check_static_pod,
    check_withdrawal,
    kubelet_node,
    leftovers,
)
from tests.harness import cni_network, registry, stowage_daemon
from tests.images.publish import publish_catalog

pytestmark = [pytest.mark.root, pytest.mark.registry, pytest.mark.daemon]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeletNode]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if not os.access(KUBELET, os.X_OK):
        pytest.skip(f"no kubelet at {KUBELET} (make .tools/bin/kubelet builds it)")
    log_dir = str(tmp_path_factory.mktemp("kubelet"))
    with registry() as reg, cni_network() as net:
        publish_catalog(reg.url)
        with stowage_daemon(reg.url, net) as daemon, kubelet_node(daemon, net, log_dir) as n:
            yield n
    left = leftovers(n)
    assert left == [], f"the kubelet node left {left}"


def _run(node: KubeletNode, check: Callable[[KubeletNode], str]) -> None:
    try:
        summary = check(node)
    except (AssertionError, TimeoutError) as exc:
        raise AssertionError(
            f"{exc}\n---- kubelet log (tail; all of it in {node.log_path}) ----\n"
            f"{node.log_tail(4000)}"
        ) from exc
    print(summary)


def test_static_pod_runs_with_logs_and_shared_volume(node: KubeletNode) -> None:
    _run(node, check_static_pod)


def test_exited_container_is_restarted_per_restart_policy(node: KubeletNode) -> None:
    _run(node, check_restart_policy)


def test_exec_liveness_probes(node: KubeletNode) -> None:
    _run(node, check_liveness_probe)


def test_shared_pid_namespace_pod(node: KubeletNode) -> None:
    _run(node, check_shared_pid_namespace)


def test_kubelet_endpoints_on_loopback(node: KubeletNode) -> None:
    _run(node, check_kubelet_view)


def test_withdrawn_manifests_leave_nothing_on_stowage(node: KubeletNode) -> None:
    _run(node, check_withdrawal)

from __future__ import annotations

import threading
import time
from pathlib import Path

from cri_shim.events import ContainerEvent, EventBus, ExitWatcher


def test_subscribers_get_events_published_after_they_subscribe() -> None:
    bus = EventBus()
    bus.publish(ContainerEvent("early", "sb", "created", 1))
    with bus.subscribe() as q:
        bus.publish(ContainerEvent("c1", "sb", "started", 2))
        assert q.get_nowait().container_id == "c1"
        assert q.empty()
    bus.publish(ContainerEvent("c2", "sb", "stopped", 3))  # no subscriber: dropped


def test_a_slow_subscriber_loses_its_oldest_events() -> None:
    bus = EventBus(backlog=2)
    with bus.subscribe() as q:
        for i in range(5):
            bus.publish(ContainerEvent(f"c{i}", "sb", "created", i))
        assert [q.get_nowait().container_id for _ in range(2)] == ["c3", "c4"]


def test_exit_watcher_reports_each_new_exit_file_once(tmp_path: Path) -> None:
    (tmp_path / "before").write_text("0")
    seen: list[str] = []
    done = threading.Event()

    def on_exit(cid: str) -> None:
        seen.append(cid)
        done.set()

    watcher = ExitWatcher(str(tmp_path), on_exit, interval=0.01)
    watcher.start()
    try:
        (tmp_path / "c1").write_text("3")
        assert done.wait(5)
        time.sleep(0.05)
        assert seen == ["c1"]
    finally:
        watcher.stop()

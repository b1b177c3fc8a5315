"""Container lifecycle events for GetContainerEvents (the kubelet's evented PLEG).

Managers ``publish`` an event when a container is created, started, found exited or removed;
each GetContainerEvents stream ``subscribe``s and gets every event from then on. A slow
subscriber loses its oldest events rather than slowing the runtime down (the kubelet
relists anyway). An exit is noticed by a watcher that looks for new conmon exit files.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

__all__ = ["ContainerEvent", "EventBus", "ExitWatcher"]

CREATED, STARTED, STOPPED, DELETED = "created", "started", "stopped", "deleted"


@dataclass(frozen=True)
class ContainerEvent:
    container_id: str
    sandbox_id: str
    kind: str  # created | started | stopped | deleted
    at_ns: int


class EventBus:
    def __init__(self, backlog: int = 1000) -> None:
        self._backlog = backlog
        self._subscribers: list[queue.Queue[ContainerEvent]] = []
        self._lock = threading.Lock()

    def publish(self, event: ContainerEvent) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for q in subscribers:
            while True:
                try:
                    q.put_nowait(event)
                    break
                except queue.Full:
                    with contextlib.suppress(queue.Empty):
                        q.get_nowait()

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[queue.Queue[ContainerEvent]]:
        q: queue.Queue[ContainerEvent] = queue.Queue(self._backlog)
        with self._lock:
            self._subscribers.append(q)
        try:
            yield q
        finally:
            with self._lock:
                self._subscribers.remove(q)


class ExitWatcher:
    """Calls ``on_exit(container_id)`` once for each new file in conmon's exit directory."""

    def __init__(self, exit_dir: str, on_exit: Callable[[str], None], interval: float = 0.2):
        self._dir = exit_dir
        self._on_exit = on_exit
        self._interval = interval
        self._stop = threading.Event()
        self._seen: set[str] = set()
        self._thread = threading.Thread(target=self._run, name="exit-watcher", daemon=True)

    def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._seen = set(os.listdir(self._dir))  # exits before start-up were folded then
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                names = set(os.listdir(self._dir))
            except FileNotFoundError:
                continue
            for name in sorted(names - self._seen):
                with contextlib.suppress(Exception):
                    self._on_exit(name)
            self._seen = names


def now_ns() -> int:
    return time.time_ns()

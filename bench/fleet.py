"""Many MQTT clients on one thread, standing in for a fleet of connected units.

A thread per paho client would not scale to 2,000 units in one process, so every client
here runs on paho's external loop API (``loop_read``/``loop_write``/``loop_misc``) driven
by one selector. paho's own ``loop_start`` uses ``select()``, which cannot watch a file
descriptor above 1024: connect every other client of the benchmark before the fleet.
"""

from __future__ import annotations

import selectors
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from server.broker import LocalBroker


class Fleet:
    """``n`` clients subscribed to ``topics_for(i)``; ``on_message(i, msg)`` on the fleet thread."""

    def __init__(
        self,
        broker: LocalBroker,
        n: int,
        topics_for: Callable[[int], list[str]],
        on_message: Callable[[int, mqtt.MQTTMessage], Any],
        *,
        prefix: str = "fleet",
    ) -> None:
        self.n = n
        self.clients: list[mqtt.Client] = []
        self._selector = selectors.DefaultSelector()
        self._subscribed = 0
        self._lock = threading.Lock()
        self.all_subscribed = threading.Event()
        self._stop = threading.Event()
        for i in range(n):
            client = broker.client()  # its own account: the client id is the user name
            client.user_data_set(i)
            client.on_connect = self._subscriber(topics_for(i))
            client.on_subscribe = self._on_subscribe
            client.on_message = lambda c, index, msg: on_message(index, msg)
            client.connect("127.0.0.1", broker.port, clean_start=True)
            sock = client.socket()
            assert sock is not None
            self._selector.register(sock, selectors.EVENT_READ, client)
            self.clients.append(client)
        self._thread = threading.Thread(target=self._run, name="fleet", daemon=True)
        self._thread.start()

    @staticmethod
    def _subscriber(topics: list[str]) -> Callable[..., None]:
        def on_connect(client: mqtt.Client, *args: Any) -> None:
            client.subscribe([(topic, 1) for topic in topics])

        return on_connect

    def _on_subscribe(self, *args: Any) -> None:
        with self._lock:
            self._subscribed += 1
            if self._subscribed == self.n:
                self.all_subscribed.set()

    def _run(self) -> None:
        last_misc = 0.0
        while not self._stop.is_set():
            for client in self.clients:
                if client.want_write():
                    client.loop_write()
            for key, _ in self._selector.select(0.005):
                key.data.loop_read(10)
            now = time.monotonic()
            if now - last_misc > 1.0:
                for client in self.clients:
                    client.loop_misc()
                last_misc = now

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for client in self.clients:
            client.disconnect()
            client.loop_write()
        self._selector.close()

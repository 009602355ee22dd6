"""Loopback addresses for the stage's tasks: an Elastic IP 127.0.0.N and a private IP 127.1.0.N.

Both on loopback: the stage never sends traffic elsewhere. Fargate gives an ENI a private IP of
its subnet and NATs the Elastic IP to it; the stage's tasks listen on both addresses themselves.
"""

from __future__ import annotations

import random
import socket
import threading

from stage.errors import StageError

PUBLIC_NETWORK = "127.0.0"
PRIVATE_NETWORK = "127.1.0"


class AddressPool:
    """Hands out NETWORK.N addresses (127.0.0.N by default) whose port is free, oldest-released first.

    A replaced task gets a new address, as on Fargate, so a harness that caches
    an IP is caught.
    """

    def __init__(self, port: int, network: str = PUBLIC_NETWORK) -> None:
        self._port = port
        self._network = network
        offset = random.randrange(0, 200)
        numbers = list(range(2, 255))
        self._free = numbers[offset:] + numbers[:offset]
        self._lock = threading.Lock()

    def take(self) -> str:
        with self._lock:
            for _ in range(len(self._free)):
                address = f"{self._network}.{self._free.pop(0)}"
                if port_is_free(address, self._port):
                    return address
                self._free.append(int(address.rsplit(".", 1)[1]))
        raise StageError(f"no free {self._network}.N address with port {self._port} free")

    def release(self, address: str) -> None:
        with self._lock:
            self._free.append(int(address.rsplit(".", 1)[1]))


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True

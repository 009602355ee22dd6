"""Loopback addresses for the stage's tasks: an Elastic IP 127.0.0.N and a private IP 127.1.0.N.

Both on loopback: the stage never sends traffic elsewhere. Fargate gives an ENI a private IP of
its subnet and NATs the Elastic IP to it; the stage's tasks listen on both addresses themselves.
"""

from __future__ import annotations

import fcntl
import random
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import IO

from stage.errors import StageError

PUBLIC_NETWORK = "127.0.0"
PRIVATE_NETWORK = "127.1.0"
# One lock file per address and port, held while a task has it: stages in other processes
# (xdist workers, a second test run) skip it. The kernel drops a lock when its process dies.
CLAIMS_DIR = Path(tempfile.gettempdir()) / "civicforge-stage-addresses"
# A released address stays claimed this long: a request still aimed at the stopped task must meet
# nothing, not another stage's task that took the address the moment it was free (xdist workers).
QUARANTINE_S = 60.0


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
        self._claims: dict[str, IO[bytes]] = {}
        self._released: dict[str, float] = {}  # address -> when it was released (its claim still held)
        self._lock = threading.Lock()

    def take(self) -> str:
        with self._lock:
            self._end_quarantines()
            for _ in range(len(self._free)):
                address = f"{self._network}.{self._free.pop(0)}"
                if port_is_free(address, self._port) and (self._released.pop(address, None) is not None
                                                          or self._claim(address)):
                    return address
                self._free.append(int(address.rsplit(".", 1)[1]))
        raise StageError(f"no free {self._network}.N address with port {self._port} free")

    def release(self, address: str) -> None:
        """Free ``address`` for this pool (oldest first); other processes get it after ``QUARANTINE_S``."""
        with self._lock:
            if address in self._claims:
                self._released[address] = time.monotonic()
            self._free.append(int(address.rsplit(".", 1)[1]))

    def _end_quarantines(self) -> None:
        now = time.monotonic()
        for address in [a for a, released in self._released.items() if now - released >= QUARANTINE_S]:
            del self._released[address]
            self._claims.pop(address).close()

    def close(self) -> None:
        """Give up every claim (the stage is stopping)."""
        with self._lock:
            claims, self._claims, self._released = list(self._claims.values()), {}, {}
        for claim in claims:
            claim.close()

    def _claim(self, address: str) -> bool:
        """Claim ``address`` across processes; False if another pool holds it.

        A free port is not enough: another process's task may not have bound it yet
        (still booting, or never: a task that hangs).
        """
        try:
            CLAIMS_DIR.mkdir(exist_ok=True)
            claim = open(CLAIMS_DIR / f"{address}-{self._port}.lock", "ab")  # noqa: SIM115 - held until release
        except OSError as error:
            raise StageError(f"cannot claim task addresses in {CLAIMS_DIR}: {error.strerror}") from None
        try:
            fcntl.flock(claim, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            claim.close()
            return False
        self._claims[address] = claim
        return True


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True

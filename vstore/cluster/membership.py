"""A recorder process as a member of a cluster: its lease in etcd, kept alive by a thread,
its member key bound to it, and how long it may still act for the cluster.

Fencing by time: the member may act (record its cameras, write their shared state) only
until ``valid_until``: the moment it sent its last successful keepalive, plus the lease's
TTL, less a margin. etcd counts the TTL from when it received that keepalive, later still, so
the member always stops before etcd can give its cameras to another. A member that was
paused (SIGSTOP, a long GC, a VM freeze) finds on waking that the deadline has passed and
stops before writing anything more."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

from vstore.base import layout
from vstore.base.errors import ClusterError
from vstore.cluster.etcd_client import EtcdClient

log = logging.getLogger(__name__)

MARGIN_S = 2.0  # stop this long before the lease could expire at etcd


class Member:
    """Joins the cluster under ``name`` and stays in it until ``leave``: ``lease_id`` is the
    current lease (a new one after a loss), ``valid()`` whether it may act now.
    ``on_lost`` is called (from the keepalive thread) when the member must stop acting: its
    lease expired or could not be renewed in time."""

    def __init__(
        self,
        client: EtcdClient,
        prefix: str,
        name: str,
        ttl_s: int,
        info: dict[str, object],
        on_lost: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.name = name
        self.ttl_s = ttl_s
        self.info = info
        self.on_lost = on_lost
        self.lease_id = 0
        self._valid_until = 0.0  # time.monotonic() deadline
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.losses = 0

    def valid(self) -> bool:
        """Whether the member may act for the cluster now (its lease surely still stands)."""
        with self._lock:
            return self.lease_id != 0 and time.monotonic() < self._valid_until

    def valid_until(self) -> float:
        """The ``time.monotonic()`` instant up to which the lease surely stands (0: none).
        CLOCK_MONOTONIC is the machine's: a recorder process compares it with its own."""
        with self._lock:
            return self._valid_until if self.lease_id else 0.0

    def remaining_s(self) -> float:
        with self._lock:
            return max(0.0, self._valid_until - time.monotonic()) if self.lease_id else 0.0

    def join(self) -> None:
        """A new lease and the member key; ClusterError when etcd cannot be reached."""
        sent = time.monotonic()
        lease = self.client.grant(self.ttl_s)
        body = json.dumps({**self.info, "name": self.name, "lease": lease}).encode()
        if (
            self.client.create(layout.cluster_member_key(self.prefix, self.name), body, lease)
            is None
        ):
            self.client.revoke(lease)
            raise ClusterError(
                f"member {self.name!r} is already in the cluster (another process with the "
                "same [cluster] name, or one that died less than a lease ago)"
            )
        with self._lock:
            self.lease_id = lease
            self._valid_until = sent + self.ttl_s - MARGIN_S
        if self._thread is None:
            self._thread = threading.Thread(target=self._keep, name="vstore-lease", daemon=True)
            self._thread.start()
        log.info("joined cluster %s as %s (lease %x)", self.prefix, self.name, lease)

    def _keep(self) -> None:
        every = max(0.5, self.ttl_s / 4)
        wait = every
        while not self._stop.wait(wait):
            wait = every
            with self._lock:
                lease = self.lease_id
            if lease == 0:
                self._rejoin()
                continue
            sent = time.monotonic()
            try:
                ttl = self.client.refresh(lease)
            except ClusterError as exc:
                ttl = None
                log.warning("lease keepalive failed: %s", exc)
            now = time.monotonic()
            if ttl is not None and ttl > 0:
                with self._lock:
                    if sent < self._valid_until:  # (a lapse cannot be renewed afterwards)
                        self._valid_until = sent + min(ttl, self.ttl_s) - MARGIN_S
                        continue
            if ttl is None and now < self._valid_until:
                wait = 0.25  # etcd unreachable for now (an election): still valid, try soon
                continue
            self._lose("lease expired" if ttl is not None else "etcd unreachable past the lease")

    def _lose(self, why: str) -> None:
        with self._lock:
            lease = self.lease_id
            if lease == 0:
                return
            self.lease_id = 0
            self._valid_until = 0.0
            self.losses += 1
        try:  # its cameras go to the others at once, not when etcd times the lease out
            self.client.revoke(lease)
        except ClusterError:
            pass
        log.error("cluster member %s lost its lease (%s): it stops acting for the cluster",
                  self.name, why)  # fmt: skip
        if self.on_lost is not None:
            self.on_lost(why)

    def _rejoin(self) -> None:
        try:
            self.join()
        except ClusterError as exc:
            log.warning("cannot rejoin the cluster yet: %s", exc)

    def check(self) -> None:
        """Raise ClusterError unless the member may act now."""
        if not self.valid():
            raise ClusterError(f"member {self.name} holds no valid lease: it does not act now")

    def leave(self) -> None:
        """Stop the keepalive and give the lease back (its keys go at once)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            lease, self.lease_id = self.lease_id, 0
        if lease:
            try:
                self.client.revoke(lease)
            except ClusterError as exc:
                log.warning("lease not revoked (it expires by itself): %s", exc)

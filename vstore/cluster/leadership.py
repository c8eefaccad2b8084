"""An elected role in the cluster, held by one member at a time: the member that creates the
role's key in etcd (create-if-absent, bound to its lease) holds it until its lease goes; the
key's create revision is the role's epoch, higher for every later holder.

The holder acts for the role only while its lease is surely valid (``Member.valid``, fencing
by time as for cameras) and the key is still the one it created (asked of etcd before each
step that changes shared state), so a holder that was paused or cut off past its lease never
acts beside the next one."""

from __future__ import annotations

import threading
import time

from vstore.base import layout
from vstore.base.errors import ClusterError
from vstore.cluster.etcd_client import EtcdClient
from vstore.cluster.membership import Member

RECHECK_S = 1.0  # how long etcd's word that the key is still this member's is taken


class Leadership:
    """``role`` in the cluster of ``member``: ``tick`` stands for it (each agent tick),
    ``epoch`` says whether this member holds it, ``leads`` asks etcd whether it still does."""

    def __init__(self, client: EtcdClient, prefix: str, role: str, member: Member) -> None:
        self.client = client
        self.key = layout.cluster_leader_key(prefix, role)
        self.role = role
        self.member = member
        self._lock = threading.Lock()
        self._epoch = 0
        self._lease = 0  # the lease the key was created under (a new lease: stand again)
        self._confirmed = -RECHECK_S  # time.monotonic() etcd last said the key was this one

    def tick(self) -> None:
        """Stand for the role if nobody holds it (ClusterError: etcd not reachable now)."""
        lease = self.member.lease_id
        if not self.member.valid():
            self._set(0, 0)
            return
        with self._lock:
            if self._epoch and self._lease == lease:
                return
        rev = self.client.create(self.key, self.member.name.encode(), lease)
        self._set(rev or 0, lease if rev else 0)

    def _set(self, epoch: int, lease: int) -> None:
        with self._lock:
            self._epoch, self._lease = epoch, lease
            self._confirmed = -RECHECK_S

    def epoch(self) -> int:
        """The role's epoch if this member holds it now (as far as it knows), else 0."""
        with self._lock:
            held = self._epoch if self._lease == self.member.lease_id else 0
        return held if held and self.member.valid() else 0

    def leads(self) -> bool:
        """Whether this member surely holds the role now: its lease valid, and the key in
        etcd still the one it created (asked of etcd at most every ``RECHECK_S``: the key is
        bound to the lease, which cannot have run out while the member is valid, so only a
        person deleting it by hand is caught by asking). False when etcd cannot say."""
        epoch = self.epoch()
        if not epoch:
            return False
        now = time.monotonic()
        with self._lock:
            fresh = now - self._confirmed < RECHECK_S
        if not fresh:
            try:
                kv = self.client.get(self.key)
            except ClusterError:
                return False
            if kv is None or kv.create_revision != epoch:
                self._set(0, 0)
                return False
            with self._lock:
                self._confirmed = now
        return self.member.valid() and self.epoch() == epoch

    def release(self) -> None:
        """Give the role back (only the key this member created), so another may stand."""
        epoch = self.epoch()
        self._set(0, 0)
        if epoch:
            self.client.delete_if(self.key, epoch)


def role_holder(client: EtcdClient, prefix: str, role: str) -> tuple[str, int] | None:
    """(member, epoch) of whoever holds ``role`` in the cluster now, or None."""
    kv = client.get(layout.cluster_leader_key(prefix, role))
    return None if kv is None else (kv.value.decode(errors="replace"), kv.create_revision)

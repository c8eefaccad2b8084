"""The one door to etcd: leases, create-if-absent keys and prefix reads over etcd's HTTP
gateway (through ``etcd3gw``), failing over between the cluster's endpoints, so a member
whose etcd server dies (the leader among them) goes on through the others."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from vstore.base.errors import ClusterError, UsageError
from vstore.store.config import etcd_endpoint

T = TypeVar("T")

REQUEST_TIMEOUT_S = 2.0  # an etcd member that does not answer in this is tried no longer


class KeyValue:
    """A key's value and the revisions that fence with it."""

    __slots__ = ("create_revision", "key", "lease", "mod_revision", "value")

    def __init__(self, key: str, value: bytes, meta: dict[str, Any]) -> None:
        self.key = key
        self.value = value
        self.create_revision = int(meta.get("create_revision", 0))
        self.mod_revision = int(meta.get("mod_revision", 0))
        self.lease = int(meta.get("lease", 0) or 0)


def parse_endpoints(urls: list[str]) -> list[tuple[str, int]]:
    out = [etcd_endpoint(url) for url in urls]
    if not out:
        raise UsageError('no etcd endpoints: [cluster] etcd = ["http://HOST:2379", ...]')
    return out


def _etcd_said(exc: Exception) -> bool:
    """Whether an error answer is etcd's own (its gateway's JSON with a code), not another
    HTTP server's."""
    try:
        doc = json.loads(getattr(exc, "detail_text", None) or "")
    except ValueError:
        return False
    return isinstance(doc, dict) and "code" in doc


class EtcdClient:
    """A client of the etcd cluster at ``endpoints`` (``http://HOST:PORT``). Every call goes
    to the endpoint that answered last, then to the others in turn; ClusterError when none
    answers."""

    def __init__(self, endpoints: list[str], timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        import etcd3gw  # (loaded only by processes that join a cluster)

        self._etcd3gw = etcd3gw
        self._clients = [
            etcd3gw.client(host=h, port=p, timeout=timeout_s, api_path="/v3/")
            for h, p in parse_endpoints(endpoints)
        ]
        self.endpoints = endpoints
        self._at = 0
        self._lock = threading.Lock()

    def _call(self, what: str, fn: Callable[[Any], T]) -> T:
        from etcd3gw import exceptions

        with self._lock:
            start = self._at
        last: Exception | None = None
        stuck = 0  # members that took the call but gave no answer: up, without a quorum
        for k in range(len(self._clients)):
            i = (start + k) % len(self._clients)
            try:
                out = fn(self._clients[i])
            except exceptions.ConnectionFailedError as exc:
                last = exc
                continue
            except exceptions.ConnectionTimeoutError as exc:
                last, stuck = exc, stuck + 1
                continue
            except exceptions.Etcd3Exception as exc:
                # A member cut off from the others answers "no leader" / unavailable: ask
                # another one.
                last = exc
                if "leader" in str(exc).lower() or "unavailable" in str(exc).lower():
                    stuck += 1
                    continue
                if not _etcd_said(exc):
                    # (an HTTP server that is no etcd: a port mistyped, another service's)
                    raise ClusterError(
                        f"etcd {what}: {self._url(i)} answered {exc}, as no etcd does: is it "
                        "an etcd member's client URL (port 2379 by default)?"
                    ) from exc
                raise ClusterError(f"etcd {what}: {exc}") from exc
            with self._lock:
                self._at = i
            return out
        if stuck:
            raise ClusterError(
                f"etcd {what}: no answer from {', '.join(self.endpoints)}: {stuck} member(s) "
                "took the call but could not answer it, as a member without a quorum does "
                "(is a majority of the etcd members up and reaching each other?)"
            )
        why = f" ({last})" if last is not None and str(last).strip() else ""
        raise ClusterError(f"etcd {what}: none of {', '.join(self.endpoints)} answered{why}")

    def _url(self, i: int) -> str:
        host, port = parse_endpoints([self.endpoints[i]])[0]
        return f"http://{host}:{port}"

    # --- leases ---------------------------------------------------------------------------

    def grant(self, ttl_s: int) -> int:
        """A new lease of ttl_s seconds; its id."""
        return self._call("lease grant", lambda c: int(c.lease(ttl_s).id))

    def refresh(self, lease_id: int) -> int:
        """Keep a lease alive: its TTL now, or -1 when it has expired."""
        return self._call("lease keepalive", lambda c: int(self._lease(c, lease_id).refresh()))

    def revoke(self, lease_id: int) -> None:
        self._call("lease revoke", lambda c: self._lease(c, lease_id).revoke())

    def lease_ttl(self, lease_id: int) -> int:
        """Seconds left of a lease (-1: expired)."""

        def ttl(c: Any) -> int:
            try:
                return int(self._lease(c, lease_id).ttl())
            except KeyError:  # (etcd's answer for a lease gone meanwhile has no TTL)
                return -1

        return self._call("lease ttl", ttl)

    def _lease(self, c: Any, lease_id: int) -> Any:
        return self._etcd3gw.Lease(lease_id, c)

    # --- keys -----------------------------------------------------------------------------

    def put(self, key: str, value: bytes, lease_id: int | None = None) -> None:
        def put(c: Any) -> None:
            c.put(key, value, lease=self._lease(c, lease_id) if lease_id else None)

        self._call("put", put)

    def create(self, key: str, value: bytes, lease_id: int | None = None) -> int | None:
        """Create ``key`` only if it does not exist; its create revision (the fencing epoch
        of what it grants), or None when it exists already."""
        from etcd3gw.utils import _encode

        put: dict[str, Any] = {"key": _encode(key), "value": _encode(value)}
        if lease_id:
            put["lease"] = lease_id
        txn = {
            "compare": [
                {"key": _encode(key), "result": "EQUAL", "target": "CREATE", "create_revision": 0}
            ],
            "success": [{"request_put": put}],
            "failure": [],
        }
        res = self._call("create", lambda c: c.transaction(txn))
        if not res.get("succeeded"):
            return None
        return int(res["header"]["revision"])

    def create_all(self, items: list[tuple[str, bytes]], lease_id: int | None = None) -> int | None:
        """Create every key of ``items`` in one transaction, only if none of them exists; the
        revision they were created at, or None (then none was)."""
        from etcd3gw.utils import _encode

        compare, success = [], []
        for key, value in items:
            put: dict[str, Any] = {"key": _encode(key), "value": _encode(value)}
            if lease_id:
                put["lease"] = lease_id
            compare.append(
                {"key": _encode(key), "result": "EQUAL", "target": "CREATE", "create_revision": 0}
            )
            success.append({"request_put": put})
        txn = {"compare": compare, "success": success, "failure": []}
        res = self._call("create", lambda c: c.transaction(txn))
        if not res.get("succeeded"):
            return None
        return int(res["header"]["revision"])

    def delete_if(self, key: str, create_revision: int) -> bool:
        """Delete ``key`` only if it is still the one created at create_revision (a claim
        is given back only by its holder, never one a newer owner made since)."""
        from etcd3gw.utils import _encode

        txn = {
            "compare": [
                {
                    "key": _encode(key),
                    "result": "EQUAL",
                    "target": "CREATE",
                    "create_revision": create_revision,
                }
            ],
            "success": [{"request_delete_range": {"key": _encode(key)}}],
            "failure": [],
        }
        return bool(self._call("delete", lambda c: c.transaction(txn)).get("succeeded"))

    def put_if(self, key: str, value: bytes, guard_key: str, guard_revision: int) -> bool:
        """Put ``key`` only while ``guard_key`` is still the one created at guard_revision
        (an elected member writes only while it holds the role it was elected to)."""
        from etcd3gw.utils import _encode

        txn = {
            "compare": [
                {
                    "key": _encode(guard_key),
                    "result": "EQUAL",
                    "target": "CREATE",
                    "create_revision": guard_revision,
                }
            ],
            "success": [{"request_put": {"key": _encode(key), "value": _encode(value)}}],
            "failure": [],
        }
        return bool(self._call("put", lambda c: c.transaction(txn)).get("succeeded"))

    def delete_all_if(self, items: list[tuple[str, int]]) -> bool:
        """Delete every key of ``items`` (key, create revision) in one transaction, only if
        each is still the one created at its revision; False (none deleted) otherwise."""
        from etcd3gw.utils import _encode

        compare, success = [], []
        for key, rev in items:
            k = _encode(key)
            compare.append(
                {"key": k, "result": "EQUAL", "target": "CREATE", "create_revision": rev}
            )
            success.append({"request_delete_range": {"key": k}})
        txn = {"compare": compare, "success": success, "failure": []}
        return bool(self._call("delete", lambda c: c.transaction(txn)).get("succeeded"))

    def delete(self, key: str) -> None:
        self._call("delete", lambda c: c.delete(key))

    def get(self, key: str) -> KeyValue | None:
        rows = self._call("get", lambda c: c.get(key, metadata=True))
        if not rows:
            return None
        value, meta = rows[0]
        return KeyValue(key, bytes(value), meta)

    def get_prefix(self, prefix: str) -> list[KeyValue]:
        rows = self._call("get", lambda c: c.get_prefix(prefix))
        out = []
        for value, meta in rows:
            k = meta.get("key", b"")
            out.append(KeyValue(k.decode() if isinstance(k, bytes) else str(k), bytes(value), meta))
        return out

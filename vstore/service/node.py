"""The node: the one long-running process that owns a store. It records every camera with a
``url`` in vstore.toml, each on its own recorder, and on a configuration reload starts,
restarts or stops only the cameras whose source changed; the HTTP API and the operators'
commands reach the store through it.

Stopping is orderly: every recorder stops reading, its writer flushes and seals what it was
given (lifecycle W-invariants), and only then does the store close.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from vstore.base import heap, layout
from vstore.base.errors import ClusterError, VstoreError
from vstore.base.loopback import is_loopback
from vstore.base.redaction import redact_url
from vstore.cluster.agent import Agent
from vstore.evidence.audit_chain import write_digest
from vstore.index.time_index import Batch
from vstore.lifecycle.gone_nodes import UntieredSpans, publish_cameras
from vstore.lifecycle.hot_footage import publish_card
from vstore.service.camera_run import LocalRecorders
from vstore.service.exports_api import expire_packages
from vstore.service.job_runner import JobRunner
from vstore.service.recorder_pool import RecorderPool
from vstore.store import config_edit, shared_holds
from vstore.store.config import StoreConfig, load_config
from vstore.store.store import Store

log = logging.getLogger(__name__)


class Node:
    """Owns an open, writable store for as long as it runs; see the module notes."""

    def __init__(self, store: Store) -> None:
        self.store = store
        # The audit key signs the hourly digests: missing or unreadable is an error now,
        # before anything is recorded, never a log left unsigned.
        self.keys = store.keys
        self.keys.signer("audit")
        self.keys.signer("recording")  # the cameras' chain heads, at each seal and each minute
        self._config_lock = threading.Lock()  # one change of vstore.toml at a time
        self.jobs = JobRunner(store)
        self._scheduler: threading.Thread | None = None
        self._stopping = threading.Event()
        self.started_ns = time.time_ns()
        self.ready = False
        # In a cluster ([cluster] etcd), the cameras this node records are the ones its
        # member owns (cluster/agent.py); alone, every camera with a url.
        self.cluster: Agent | None = None
        # What records the cameras: this process, or with [service] recorders above 1, its
        # recorder processes (the same face: camera_run.LocalRecorders, RecorderPool).
        self.recorders: LocalRecorders | RecorderPool = LocalRecorders(store, self._gate)
        # The cameras placed to record, each since when (wall ns), and what the bucket was
        # last told of them (gone_nodes.publish_cameras; None: nothing yet).
        self._placed: dict[str, int] = {}
        self._said_cameras: dict[str, int] | None = None
        self._said_untiered: dict[str, list[list[int]]] | None = None
        self._untiered = UntieredSpans()
        self._say_cameras_after = 0.0  # (monotonic: after a failed put, tried again then)
        self._say_untiered_after = 0.0  # (monotonic: the untiered spans are read again then)
        self._leaving = False  # drained: tiering what it holds, then stopping

    @property
    def config(self) -> StoreConfig:
        return self.store.config

    def start(self) -> None:
        # vstore.toml edited while no node ran: the change is recorded now.
        self.store.record_config("serve", "config_change", {"noticed": "at start"})
        heap.settle_for_recording()
        if self.store.config.cluster.etcd:
            self.cluster = Agent(
                self.store.config.cluster,
                cameras=lambda: [c for c, s in self.store.config.cameras.items() if s.url],
                apply=lambda: self._reconcile(self.store.config),
                info={"node": socket.gethostname(), "store": self.store.uuid},
                # A node that never runs retention must not be the one that deletes for all.
                deletes=lambda: self.store.config.retention.every_ns is not None,
                recorded_bytes=self.recorded_bytes,
            )
            self.cluster.on_drained = self._drained
            # What is tiered is written to the shared catalog under this member's epochs.
            self.store.catalog_epoch = self._catalog_epoch
            # Tiered footage is deleted by the member elected to (E1), from the catalog.
            self.store.tiered_deleter = self.cluster.deleter
        count = self.store.config.service.recorders
        if count > 1:
            agent = self.cluster
            self.recorders = RecorderPool(
                self.store, count, agent.valid_until if agent is not None else None
            )
        # Before the member claims anything: every camera it is given goes to them.
        self.recorders.start()
        if self.cluster is not None:
            try:
                self.cluster.start()  # ClusterError when etcd cannot be reached: serve refuses
            except BaseException:
                self.recorders.stop()
                raise
        self._reconcile(self.store.config)
        if self.store.index.audit_counters()[1] is None:  # (no digest was ever written)
            # A new store's log: signed from the node's first minute, not its first hour
            # (`vstore audit verify` fails a log no digest proves).
            self.write_audit_digest()
        heap.keep_trimming(self._stopping)
        self._scheduler = threading.Thread(target=self._schedule_loop, name="vstore-schedule")
        self._scheduler.start()
        self.ready = True

    def _schedule_loop(self) -> None:
        """Retention ([retention] every) and tiering ([tier] every, when [tier] url is set)
        as jobs like any other, each started only when its last run has ended. The first
        runs come one period after the node starts (recovery has just run)."""
        last = {"retention": time.monotonic(), "tier": time.monotonic()}
        next_digest_ns = _next_hour_ns(time.time_ns())
        next_heads = 0.0
        next_prune = time.monotonic() + 3600  # daily, the first an hour after the start
        next_holds = 0.0
        while not self._stopping.wait(1.0):
            config_every = self.store.config.service.chain_sign_every_s
            if time.time_ns() >= next_digest_ns:
                self.expire_packages()  # (hourly, before the digest that signs their records)
                self.write_audit_digest()
                next_digest_ns = _next_hour_ns(time.time_ns())
            if self.store.config.audit_max_age_ns is not None and time.monotonic() >= next_prune:
                next_prune = time.monotonic() + 86400
                try:
                    self.jobs.submit("audit-prune", {}, "schedule")
                except VstoreError as exc:  # stopping
                    log.warning("scheduled audit-prune not started: %s", exc)
            if time.monotonic() >= next_heads:
                self.sign_chain_heads()
                next_heads = time.monotonic() + min(10.0, config_every / 2)
            if self.store.config.tier.url and time.monotonic() >= next_holds:
                next_holds = time.monotonic() + HOLD_SYNC_EVERY_S
                self.sync_shared_holds()
            self.say_cameras()  # (a put only when they changed)
            config = self.store.config
            periods = {"retention": config.retention.every_ns}
            if config.tier.url:
                periods["tier"] = config.tier.every_ns
            for name, every_ns in periods.items():
                if every_ns is None or time.monotonic() - last[name] < every_ns / 1e9:
                    continue
                if any(j.name == name and not j.finished.is_set() for j in self.jobs.list()):
                    continue
                last[name] = time.monotonic()
                try:
                    self.jobs.submit(name, {}, "schedule")
                except VstoreError as exc:  # stopping
                    log.warning("scheduled %s not started: %s", name, exc)

    def sign_chain_heads(self) -> None:
        """Sign again each camera's chain head whose signature is older than
        ``[service] chain_sign_every_s``: the signature's time says the chain stood so then."""
        every_ns = int(self.store.config.service.chain_sign_every_s * 1e9)
        try:
            self.store.index.sign_chain_heads(
                self.keys.signer("recording"), time.time_ns(), every_ns
            )
        except VstoreError as exc:
            log.error("the chain heads were not signed: %s", exc)

    def sync_shared_holds(self) -> None:
        """Exchange holds with the other stores of the bucket (object legal holds follow the
        holds brought in or released)."""
        try:
            res = shared_holds.sync(self.store, "schedule")
            if res.brought_in or res.released:
                log.info("shared holds: %d brought in, %d released", res.brought_in, res.released)
            for e in res.errors:
                log.warning("shared holds: %s", e)
            for e in res.objects.errors:
                log.warning("object legal holds (`vstore hold sync` retries): %s", e)
        except VstoreError as exc:
            log.error("shared holds not exchanged: %s", exc)

    def expire_packages(self) -> None:
        """Remove the packages built over the API past ``[service] keep_exports_s``."""
        try:
            n = expire_packages(self.store, time.time_ns())
        except (OSError, VstoreError) as exc:
            log.warning("old evidence packages not removed: %s", exc)
            return
        if n:
            log.info("removed %d evidence package(s) kept past [service] keep_exports_s", n)

    def write_audit_digest(self) -> None:
        """Sign the audit records since the last digest (every hour, when stopping, and at
        the start of a store that has none)."""
        try:
            d = write_digest(self.store, self.keys, time.time_ns())
            if d.last_seq >= d.first_seq:
                log.info("audit digest #%d: records #%d..#%d", d.seq, d.first_seq, d.last_seq)
            else:
                log.info("audit digest #%d: no audit records since the last", d.seq)
            if d.copies is not None and d.copies.error:
                log.warning("audit digests not all copied to the object store: %s", d.copies.error)
        except VstoreError as exc:
            log.error("the audit digest was not written: %s", exc)

    def reload(self, by: str) -> dict[str, list[str]]:
        """Read vstore.toml again and record what it now says. An invalid file changes
        nothing (ConfigError says why). Returns the cameras started, restarted, stopped;
        the reload is audited as ``by``'s."""
        with self._config_lock:
            return self._apply(load_config(self.store.layout.config_path), by, "config_reload", {})

    def set_camera(self, camera_id: str, values: dict[str, Any], by: str) -> dict[str, Any]:
        """Give ``[cameras.ID]`` in vstore.toml exactly these settings and apply the file
        (a new or changed url starts or restarts that camera's recorder alone); audited as
        ``by``'s, credentials in the url left out."""
        with self._config_lock:
            created, config = config_edit.set_camera(
                self.store.layout.config_path, camera_id, values
            )
            shown = {**values, **({"url": redact_url(values["url"])} if values.get("url") else {})}
            detail = {"camera": camera_id, "created": created, "settings": shown}
            changes = self._apply(config, by, "camera_set", detail)
        return {"camera": camera_id, "created": created, **changes}

    def remove_camera(self, camera_id: str, by: str) -> dict[str, Any]:
        """Take ``[cameras.ID]`` out of vstore.toml and stop its recorder (what it recorded
        stays in the store, under its retention); audited as ``by``'s."""
        with self._config_lock:
            config = config_edit.remove_camera(self.store.layout.config_path, camera_id)
            changes = self._apply(config, by, "camera_remove", {"camera": camera_id})
        return {"camera": camera_id, **changes}

    def _apply(
        self, config: StoreConfig, by: str, action: str, detail: dict[str, Any]
    ) -> dict[str, list[str]]:
        old = self.store.config
        self.store.config = config
        if config.cluster != old.cluster:
            self._cluster_changed(config)
        running = max(1, self.recorders.processes)
        if config.service.recorders != old.service.recorders:
            if config.service.recorders == running:
                log.info("vstore.toml: [service] recorders = %d: as running", running)
            else:
                log.warning("vstore.toml: [service] recorders = %d: this node runs %d until "
                            "it starts again (restart it)", config.service.recorders,
                            running)  # fmt: skip
        changes = self._reconcile(config)
        self.store.record_config(by, action, {**detail, **changes})
        for note in config.notes:
            log.warning("vstore.toml: %s", note)
        return changes

    def _cluster_changed(self, config: StoreConfig) -> None:
        """[cluster] edited while running: pins apply now; the rest (etcd, name, prefix,
        lease, weight, a cluster joined or left) when the node starts again."""
        agent = self.cluster
        if agent is not None:
            agent.set_pins(config.cluster.pins)
            rest = config.cluster._replace(pins=agent.config.pins)
            if rest == agent.config:
                log.info("cluster: pins changed: applied now")
                return
        log.warning("vstore.toml: [cluster] changed; beyond its pins, the change applies when "
                    "this node starts again (restart it)")  # fmt: skip

    def _gate(self, camera: str) -> Callable[[], bool] | None:
        """In a cluster, what a camera's recorder asks before each write: whether this member
        still surely holds the camera (its lease valid, its claim standing)."""
        agent = self.cluster
        if agent is None:
            return None
        return lambda: agent.holds(camera)

    def _catalog_epoch(self, camera: str) -> tuple[int, int]:
        """(epoch, since) this member writes a camera's catalog hours with: its claim's; for
        a camera it does not hold now, its last claim's (kept in the index across restarts),
        so that a later owner's hour lists only what it recorded before that owner took
        over, and an earlier one's hour (written after it, the camera moved on since)
        does not fence out what it recorded after that owner (else none: 0, 0)."""
        assert self.cluster is not None
        try:
            return self.cluster.epoch_of(camera)
        except ClusterError:
            raw = self.store.index.get(layout.last_claim_key(camera))
        try:
            doc = json.loads(raw) if raw is not None else {}
            return int(doc["epoch"]), int(doc["since_ns"])
        except (ValueError, KeyError, TypeError):
            return 0, 0

    def _keep_claims(self, cameras: list[str]) -> dict[str, tuple[int, int]]:
        """This member's claim (epoch, since) on each of ``cameras`` it holds, each kept in
        the index when new."""
        assert self.cluster is not None
        claims = {}
        b = Batch()
        for cam in cameras:
            try:
                claims[cam] = epoch, since_ns = self.cluster.epoch_of(cam)
            except ClusterError:
                continue
            value = json.dumps({"epoch": epoch, "since_ns": since_ns}).encode()
            key = layout.last_claim_key(cam)
            if self.store.index.get(key) != value:
                b.put(key, value)
        if b.count:
            self.store.index.commit(b, sync=True)  # (one synced write for a failover's many)
        return claims

    def _reconcile(self, config: StoreConfig) -> dict[str, list[str]]:
        want = {cam: s for cam, s in config.cameras.items() if s.url}
        if self.cluster is not None:
            allowed = self.cluster.allowed()
            want = {cam: s for cam, s in want.items() if cam in allowed}
        changes = self.recorders.place(config, want)
        _log_changes(changes)
        claims = self._keep_claims(sorted(want)) if self.cluster is not None else {}
        # Since when it records each: its member's claim's time, else since it was placed.
        now = time.time_ns()
        self._placed = {
            cam: self._placed.get(cam) or claims.get(cam, (0, 0))[1] or now for cam in sorted(want)
        }
        return changes

    def say_cameras(self, now: bool = False) -> None:
        """Tell the bucket ([tier] url) which cameras this node records, when that changed,
        and what it holds untiered, when that changed (read once a minute; ``now``: read
        now): should the node be declared gone, its readers know what is lost with it."""
        url = self.store.config.tier.url
        placed = dict(self._placed)
        mono = time.monotonic()
        if not url or mono < self._say_cameras_after:
            return
        if placed == self._said_cameras and mono < self._say_untiered_after and not now:
            return
        self._say_untiered_after = mono + UNTIERED_SAY_EVERY_S
        untiered = self._untiered.read(self.store)
        if placed == self._said_cameras and untiered == self._said_untiered:
            return
        try:
            publish_cameras(self.store, self.store.tier(url), placed, untiered, time.time_ns())
            self._said_cameras, self._said_untiered = placed, untiered
        except VstoreError as exc:
            self._say_cameras_after = time.monotonic() + HOLD_SYNC_EVERY_S
            log.warning("the bucket was not told which cameras this node records: %s", exc)

    def camera_status(self, camera_id: str) -> dict[str, Any]:
        """What a camera's recorder is doing: recording or not, its source, connects and
        reconnects, drops, the end of its durable footage, its last error."""
        return self.recorders.status(camera_id)

    def recorded(self) -> list[str]:
        """Cameras with a recorder, running or ended (a file source ends)."""
        return self.recorders.recorded()

    def advertise(self, api_url: str) -> None:
        """Say in the bucket ([tier] url) where this node's API answers, so that readers of
        the bucket fetch the footage it has not tiered yet from it."""
        url = self.store.config.tier.url
        if not url:
            return
        try:
            publish_card(self.store, self.store.tier(url), api_url)
        except VstoreError as exc:
            log.warning("the bucket was not told where this node's API is: %s", exc)
            return
        if not api_url.startswith("https://"):
            # Readers send tokens over plain HTTP only on loopback: elsewhere this card is
            # of no use to them, which an operator should hear of.
            host = urlsplit(api_url).hostname or ""
            level = logging.INFO if is_loopback(host) else logging.WARNING
            log.log(level, "the bucket names this node's API %s: readers of the bucket on "
                    "other machines do not send their tokens over plain HTTP; set [service] "
                    "url = \"https://...\" (a TLS proxy's) for them", api_url)  # fmt: skip

    def recorded_bytes(self) -> dict[str, int]:
        """Footage bytes each running recorder has stored (what its bitrate is measured by)."""
        return self.recorders.recorded_bytes()

    def recording(self) -> list[str]:
        """Cameras whose source is connected now."""
        return self.recorders.recording()

    def stop(self) -> None:
        """Stop the jobs at their safe points, then recording (every writer flushes and
        seals), then sign the audit records since the last digest."""
        self.ready = False
        self._stopping.set()
        self.recorders.stopping()  # (a recorder process that ends now is not started again)
        if self.cluster is not None:
            self.cluster.stop()  # its cameras seal, then its lease and claims go
        if self._scheduler is not None:
            self._scheduler.join()
        self.jobs.close()
        self.recorders.stop()
        self._placed = {}
        self.say_cameras(now=True)  # (recording nothing now; what it leaves untiered, exactly)
        self.write_audit_digest()  # the last records, up to the stop

    def _drained(self) -> None:
        """Every camera handed over (``node drain``): what this node holds untiered goes to
        the bucket before it stops, so that a drained node can be forgotten without loss
        (cluster.md, Drain). The member stays (drain --wait waits) until that is done."""
        if self._leaving:
            return
        self._leaving = True

        def leave() -> None:
            if self.store.config.tier.url:
                log.warning("cluster: drained; tiering what this node holds before it stops")
                try:
                    for running in [j for j in self.jobs.list() if j.name == "tier"]:
                        running.finished.wait()  # (a scheduled run first: one at a time)
                    job = self.jobs.submit("tier", {"older_than_ns": 0}, "drain")
                    job.finished.wait()
                    if job.state == "done":
                        log.warning("cluster: drained and tiered; stopping")
                except VstoreError as exc:  # (stopping already)
                    log.error("cluster: drained, but its footage was not tiered: %s", exc)
            if self._stopping.is_set():
                return  # (stopped meanwhile: nothing more to ask)
            agent = self.cluster
            try:
                asked = agent is None or agent.ownership.drain_asked(agent.name)
            except VstoreError:  # (etcd unreachable: it was asked)
                asked = True
            if not asked:
                log.warning("cluster: the drain was cancelled: this node goes on")
                self._leaving = False
                return
            _ask_to_stop()

        threading.Thread(target=leave, name="vstore-drain", daemon=True).start()


# How often a node exchanges holds with the other stores of its bucket.
HOLD_SYNC_EVERY_S = 30.0
# How often a node reads what it holds untiered, to tell the bucket when it changed.
UNTIERED_SAY_EVERY_S = 60.0


def _ask_to_stop() -> None:
    """A drained member stops as SIGTERM stops it (server.py handles the signal)."""
    os.kill(os.getpid(), signal.SIGTERM)


def _log_changes(changes: dict[str, list[str]]) -> None:
    for kind, cams in changes.items():
        if cams:
            log.info("cameras %s: %s", kind, ", ".join(cams))


def _next_hour_ns(now_ns: int) -> int:
    hour = 3600 * 1_000_000_000
    return (now_ns // hour + 1) * hour

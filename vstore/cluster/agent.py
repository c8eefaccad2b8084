"""A node's part in its cluster: it keeps the member's lease (membership.py) and, every
``TICK_S``, its share of the cameras (ownership.py): it claims the cameras it should record
that nobody holds, hands over those another live member should record now (the recorder
stops and its writer seals first, the claim is given back after), and stops every camera
the moment its lease is no longer surely valid. It publishes the bitrates of the cameras it
records, stands for the assigner's role (and, while it holds it, plans for the cluster) and
for the deleter's.

The node says which cameras it records through ``allowed``; ``apply`` (the node's) starts
and stops recorders to match, and returns once the stopped ones have sealed."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable

from vstore.base import layout
from vstore.base.errors import ClusterError
from vstore.cluster import assignment
from vstore.cluster.assignment import Assigner, LoadMeter, PlanReader
from vstore.cluster.etcd_client import EtcdClient
from vstore.cluster.leadership import Leadership
from vstore.cluster.membership import Member
from vstore.cluster.ownership import Claim, Ownership, preferred
from vstore.lifecycle.bucket_retention import Deleter
from vstore.store.config import ClusterConfig

log = logging.getLogger(__name__)

TICK_S = 1.0


class Agent:
    def __init__(
        self,
        config: ClusterConfig,
        cameras: Callable[[], Iterable[str]],
        apply: Callable[[], None],
        info: dict[str, object] | None = None,
        deletes: Callable[[], bool] = lambda: True,
        recorded_bytes: Callable[[], dict[str, int]] = dict,
    ) -> None:
        self.config = config
        self.name = config.member
        self.client = EtcdClient(list(config.etcd))
        self.ownership = Ownership(self.client, config.prefix)
        self.member = Member(
            self.client,
            config.prefix,
            self.name,
            config.lease_ttl_s,
            {**(info or {}), "weight": config.weight},
            on_lost=self._lost,
        )
        # The cluster's one deleter of tiered footage (E1): whichever member stands first.
        # A member stands only while ``deletes()`` (its node runs retention on a schedule).
        self.retention_lead = Leadership(self.client, config.prefix, "retention", self.member)
        self._deletes = deletes
        # The one member that plans who records what, balanced by the bitrates every member
        # measures of its cameras and publishes (assignment.py).
        self.assign_lead = Leadership(self.client, config.prefix, assignment.ROLE, self.member)
        self.assigner = Assigner(self.client, config.prefix, self.assign_lead, config.pins)
        self.plans = PlanReader(self.client, config.prefix)
        self._damage_said = ""  # the plan's damage last logged
        self.meter = LoadMeter(recorded_bytes)
        self._next_load_s = 0.0
        self.load_bps = 0  # the bitrate of the cameras this member records, as last published
        self._cameras = cameras
        self._apply = apply
        self.on_drained: Callable[[], None] | None = None  # drained: every camera handed over
        self._lock = threading.Lock()
        self._owned: dict[str, Claim] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.handovers = 0
        self.claimed = 0

    # --- what the node asks -----------------------------------------------------------------

    def allowed(self) -> set[str]:
        """The cameras this member may record now."""
        if not self.member.valid():
            return set()
        with self._lock:
            return set(self._owned)

    def holds(self, camera: str) -> bool:
        """Whether this member may write ``camera`` now (asked before every write)."""
        return camera in self._owned and self.member.valid()

    def valid_until(self, camera: str) -> float:
        """The ``time.monotonic()`` instant up to which this member may write ``camera``
        (0: not now): what a recorder process's writes are fenced by."""
        return self.member.valid_until() if camera in self._owned else 0.0

    def epoch_of(self, camera: str) -> tuple[int, int]:
        """(fencing epoch, wall time taken) of this member's claim on ``camera``
        (ClusterError if it holds none)."""
        with self._lock:
            c = self._owned.get(camera)
        if c is None or not self.member.valid():
            raise ClusterError(f"camera {camera}: this member holds no valid claim on it")
        return c.epoch, c.since_ns

    def deleter(self) -> Deleter | None:
        """This member as the cluster's deleter of tiered footage, if it is the one now."""
        epoch = self.retention_lead.epoch()
        if not epoch:
            return None
        return Deleter(self.name, epoch, self.retention_lead.leads)

    def set_pins(self, pins: dict[str, str]) -> None:
        """Pins from an edited vstore.toml: followed from the next tick (the assigner's too)."""
        self.config = self.config._replace(pins=dict(pins))
        self.assigner.pins = dict(pins)

    def owned(self) -> dict[str, Claim]:
        with self._lock:
            return dict(self._owned)

    # --- running ----------------------------------------------------------------------------

    def start(self) -> None:
        """Join (ClusterError when etcd cannot be reached), take a first share, and go on
        in a thread. A drain asked of this member before it started is done (it stopped
        once drained, or was asked while down): started again, it takes a share again."""
        self.member.join()
        if self.name in {m.name for m in self.ownership.members() if m.draining}:
            self.ownership.drain(self.name, on=False)
            log.info("cluster: the drain of %s from before this start is over: it takes a "
                     "share of the cameras again", self.name)  # fmt: skip
        self.tick()
        self._thread = threading.Thread(target=self._run, name="vstore-cluster", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(TICK_S):
            try:
                self.tick()
            except ClusterError as exc:
                log.warning("cluster: %s", exc)

    def _lost(self, why: str) -> None:
        # Called by the keepalive thread: every camera stops now; claims went with the lease.
        with self._lock:
            self._owned.clear()
        self._apply()

    def tick(self) -> None:
        """One round: drop what is no longer ours, hand over, claim."""
        if not self.member.valid():
            if self.owned():
                self._lost("lease not valid")
            return
        members = self.ownership.members()
        claims = self.ownership.claims()
        plan = self.plans.read()
        if self.plans.damaged and self.plans.damaged != self._damage_said:
            log.error("cluster: %s; the plan read before stays in force until the assigner "
                      "writes a new one", self.plans.damaged)  # fmt: skip
        self._damage_said = self.plans.damaged
        planned = plan.owners if plan is not None else None
        me = self.name
        wanted = set(self._cameras())
        give_back: list[Claim] = []
        with self._lock:
            for cam, claim in list(self._owned.items()):
                held = claims.get(cam)
                if held is None or held.epoch != claim.epoch:  # lost with an old lease
                    del self._owned[cam]
                    continue
                should = preferred(cam, members, self.config.pins, planned)
                if cam not in wanted or (should is not None and should != me):
                    del self._owned[cam]
                    give_back.append(claim)
        if give_back:
            self._apply()  # their recorders stop and seal first...
            self.ownership.release_many(give_back)  # ...then another may take them
            self.handovers += len(give_back)
            log.info("cluster: handed over %d camera(s): %s", len(give_back),
                     _some([c.camera for c in give_back]))  # fmt: skip
        lease = self.member.lease_id
        todo = [
            cam
            for cam in sorted(wanted)
            if cam not in claims
            and cam not in self._owned
            and preferred(cam, members, self.config.pins, planned) == me
        ]
        taken = []
        if todo and self.member.valid():
            # Batches of claims, one etcd transaction (one raft commit) each: a member that
            # starts beside thousands of cameras, or takes over a dead one's, does so at once.
            for got in self.ownership.claim_many(todo, me, lease):
                with self._lock:
                    self._owned[got.camera] = got
                taken.append(got.camera)
                self.claimed += 1
        if taken:
            log.info("cluster: recording %d camera(s): %s", len(taken), _some(taken))
            self._apply()
        if self.member.valid():
            self._publish_load()
            self.assign_lead.tick()
            held = {c: cl.member for c, cl in claims.items()}
            self.assigner.tick(wanted, members, held, plan, bool(self.plans.damaged))
            if self._deletes():
                self.retention_lead.tick()
            elif self.retention_lead.epoch():
                log.warning("cluster: this node runs no retention ([retention] every is off): "
                            "it gives the deleter's role back")  # fmt: skip
                self.retention_lead.release()
        mine = next((m for m in members if m.name == me), None)
        if mine is not None and mine.draining and not self.owned() and self.on_drained:
            log.info("cluster: drained (every camera handed over)")
            self.on_drained()

    def _publish_load(self) -> None:
        """Every LOAD_EVERY_S: the bitrate of each camera recorded here, for the assigner."""
        now_s = time.monotonic()
        if now_s < self._next_load_s:
            return
        self._next_load_s = now_s + assignment.LOAD_EVERY_S
        rates = self.meter.sample()
        self.client.put(
            layout.cluster_load_key(self.config.prefix, self.name),
            json.dumps(rates, separators=(",", ":")).encode(),
            self.member.lease_id,
        )
        self.load_bps = sum(rates.values())

    def stop(self) -> None:
        """Leave the cluster: cameras stop (sealed), then the lease goes with its claims."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            self._owned.clear()
        self._apply()
        self.member.leave()


def _some(names: list[str], n: int = 20) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")

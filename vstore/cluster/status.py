"""What a cluster looks like now, read from etcd: its members (node, weight, draining, lease
time left, cameras held, their bitrate), every camera's owner and epoch, the configured
cameras nobody records, and who holds the elected roles (``vstore cluster status``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from vstore.base import layout
from vstore.base.errors import ClusterError
from vstore.cluster import assignment
from vstore.cluster.assignment import PlanReader, parse_rates
from vstore.cluster.etcd_client import EtcdClient
from vstore.cluster.leadership import role_holder
from vstore.cluster.ownership import Ownership, preferred


@dataclass
class MemberStatus:
    name: str
    node: str
    weight: float
    draining: bool
    lease_left_s: int  # what is left of its lease (-1: not known)
    cameras: list[str] = field(default_factory=list)
    # The bitrate of the cameras it records, as it last measured and published them.
    load_bits_per_s: int = 0


@dataclass
class ClusterStatus:
    prefix: str
    endpoints: list[str]
    members: list[MemberStatus] = field(default_factory=list)
    owners: dict[str, dict[str, Any]] = field(default_factory=dict)  # camera -> member, epoch
    unowned: list[str] = field(default_factory=list)  # configured, recorded by nobody
    misplaced: list[str] = field(default_factory=list)  # held by another than should (moving)
    # The member elected to delete the bucket's tiered footage, and its epoch (None: nobody).
    deleter: dict[str, Any] | None = None
    # The member that plans who records which camera (balanced by bitrate), its epoch, and
    # when its plan was last written (None: nobody; cameras then go by rendezvous hashing).
    assigner: dict[str, Any] | None = None
    plan_at_ns: int | None = None
    plan_damaged: str = ""  # why the stored plan cannot be read ("": it can)
    rebalance_asked: bool = False


def cluster_status(
    client: EtcdClient, prefix: str, cameras: list[str], pins: dict[str, str] | None = None
) -> ClusterStatus:
    own = Ownership(client, prefix)
    members = own.members()
    claims = own.claims()
    out = ClusterStatus(prefix, client.endpoints)
    leases = {}
    for kv in client.get_prefix(layout.cluster_members_prefix(prefix)):
        try:
            leases[str(json.loads(kv.value)["name"])] = kv.lease
        except (ValueError, KeyError, TypeError):
            continue
    for m in members:
        try:
            ttl = client.lease_ttl(leases[m.name]) if leases.get(m.name) else -1
        except ClusterError:
            ttl = -1
        held = sorted(c for c, cl in claims.items() if cl.member == m.name)
        out.members.append(MemberStatus(m.name, m.node, m.weight, m.draining, ttl, held))
    loads: dict[str, int] = {}
    for kv in client.get_prefix(layout.cluster_loads_prefix(prefix)):
        try:
            loads[kv.key.rsplit("/", 1)[-1]] = sum(parse_rates(kv.value).values())
        except ValueError:
            continue  # (not what a member wrote)
    for m in out.members:
        m.load_bits_per_s = loads.get(m.name, 0)
    out.owners = {c: {"member": cl.member, "epoch": cl.epoch} for c, cl in sorted(claims.items())}
    holder = role_holder(client, prefix, "retention")
    if holder is not None:
        out.deleter = {"member": holder[0], "epoch": holder[1]}
    holder = role_holder(client, prefix, assignment.ROLE)
    if holder is not None:
        out.assigner = {"member": holder[0], "epoch": holder[1]}
    reader = PlanReader(client, prefix)
    plan = reader.read()
    out.plan_damaged = reader.damaged
    planned = plan.owners if plan is not None else None
    out.plan_at_ns = plan.at_ns if plan is not None else None
    out.rebalance_asked = client.get(layout.cluster_rebalance_key(prefix)) is not None
    out.unowned = sorted(set(cameras) - set(claims))
    out.misplaced = sorted(
        c
        for c, cl in claims.items()
        if preferred(c, members, pins or {}, planned) not in (None, cl.member)
    )
    return out

"""Which member records which camera.

Who *should* record a camera is a pure function of what every member reads from etcd: a
pin names the member outright (unless it drains); else the elected assigner's plan, balanced by bitrate
(assignment.py), names it; a camera the plan does not place (no plan yet, its planned owner
gone) goes by weighted rendezvous hashing over the members not draining, so every member
computes the same answer, and a camera is recorded even before the assigner has planned.
Who *does* record it is the claim: a create-if-absent key bound to the owner's lease, whose
create revision (etcd's cluster-wide, ever-increasing revision) is the camera's fencing
epoch. A member records a camera only while it holds the claim and its lease is
valid (membership.py); it hands a camera over by stopping its recorder (the writer seals)
and only then deleting the claim, so two members never record one camera at once."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from vstore.base import layout
from vstore.cluster.etcd_client import EtcdClient


@dataclass(frozen=True)
class MemberInfo:
    name: str
    weight: float = 1.0
    draining: bool = False
    node: str = ""
    api: str = ""


@dataclass(frozen=True)
class Claim:
    camera: str
    member: str
    epoch: int  # the claim's create revision in etcd
    # Wall time it was taken (known to the member that took it; 0 when read back).
    since_ns: int = field(default=0, compare=False)


# Claims per etcd transaction (etcd allows 128 operations in one by default).
CLAIM_BATCH = 64


def _score(camera: str, member: str, weight: float) -> float:
    """Weighted rendezvous score: the member with the highest takes the camera."""
    h = hashlib.blake2b(f"{camera}\x00{member}".encode(), digest_size=8).digest()
    u = (int.from_bytes(h, "big") + 0.5) / 2**64  # in (0, 1)
    return -weight / math.log(u)


def preferred(
    camera: str,
    members: list[MemberInfo],
    pins: Mapping[str, str],
    planned: Mapping[str, str] | None = None,
) -> str | None:
    """The member that should record ``camera`` now, or None when no member may: its pin,
    else the member the assigner's plan names (``planned``, assignment.py) while it is live
    and not draining, else the rendezvous answer."""
    live = {m.name: m for m in members}
    pinned = pins.get(camera)
    if pinned is not None and pinned in live and not live[pinned].draining:
        return pinned  # (a drain asks a member to hand over everything, pins included)
    if planned is not None:
        m = live.get(planned.get(camera, ""))
        if m is not None and not m.draining:
            return m.name
    takers = [m for m in members if not m.draining]
    if not takers:
        return None
    return max(takers, key=lambda m: (_score(camera, m.name, m.weight), m.name)).name


class Ownership:
    """Reads members and claims, makes and gives back claims, for one cluster prefix."""

    def __init__(self, client: EtcdClient, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def members(self) -> list[MemberInfo]:
        """The live members (their keys stand with their leases), drains marked."""
        draining = {
            kv.key[len(layout.cluster_drains_prefix(self.prefix)) :]
            for kv in self.client.get_prefix(layout.cluster_drains_prefix(self.prefix))
        }
        out = []
        for kv in self.client.get_prefix(layout.cluster_members_prefix(self.prefix)):
            if not kv.lease:
                continue  # a member's key is bound to its lease: this one no member wrote
            try:
                d = json.loads(kv.value)
                out.append(
                    MemberInfo(
                        str(d["name"]),
                        float(d.get("weight", 1.0)),
                        str(d["name"]) in draining,
                        str(d.get("node", "")),
                        str(d.get("api", "")),
                    )
                )
            except (ValueError, KeyError, TypeError):
                continue  # (not a member key vstore wrote)
        return sorted(out, key=lambda m: m.name)

    def claims(self) -> dict[str, Claim]:
        out = {}
        head = layout.cluster_owners_prefix(self.prefix)
        for kv in self.client.get_prefix(head):
            cam = kv.key[len(head) :]
            out[cam] = Claim(cam, kv.value.decode(), kv.create_revision)
        return out

    def claim(self, camera: str, member: str, lease_id: int) -> Claim | None:
        """Claim ``camera`` for ``member`` under its lease; None when another holds it."""
        rev = self.client.create(
            layout.cluster_owner_key(self.prefix, camera), member.encode(), lease_id
        )
        return Claim(camera, member, rev, time.time_ns()) if rev is not None else None

    def drain_asked(self, member: str) -> bool:
        """Whether a drain of ``member`` is asked (and not finished or cancelled)."""
        return self.client.get(layout.cluster_drain_key(self.prefix, member)) is not None

    def drain(self, member: str, on: bool = True) -> None:
        """Ask ``member`` to hand over its cameras and stop (or cancel that)."""
        key = layout.cluster_drain_key(self.prefix, member)
        if on:
            self.client.put(key, b"1")
        else:
            self.client.delete(key)

    def claim_many(self, cameras: list[str], member: str, lease_id: int) -> list[Claim]:
        """Claim many cameras for ``member``: a batch at a time in one etcd transaction (one
        raft commit for the batch), each camera of a batch that lost a race alone."""
        out: list[Claim] = []
        for i in range(0, len(cameras), CLAIM_BATCH):
            batch = cameras[i : i + CLAIM_BATCH]
            items = [(layout.cluster_owner_key(self.prefix, c), member.encode()) for c in batch]
            rev = self.client.create_all(items, lease_id)
            if rev is not None:
                now = time.time_ns()
                out.extend(Claim(c, member, rev, now) for c in batch)
                continue
            for c in batch:  # one of them is taken: claim the others one by one
                got = self.claim(c, member, lease_id)
                if got is not None:
                    out.append(got)
        return out

    def release(self, claim: Claim) -> bool:
        """Give a claim back (only the one made at its epoch)."""
        return self.client.delete_if(
            layout.cluster_owner_key(self.prefix, claim.camera), claim.epoch
        )

    def release_many(self, claims: list[Claim]) -> int:
        """Give many claims back, a batch in one etcd transaction; a batch in which one was
        no longer the member's, one by one. How many were given back."""
        n = 0
        for i in range(0, len(claims), CLAIM_BATCH):
            batch = claims[i : i + CLAIM_BATCH]
            keys = [(layout.cluster_owner_key(self.prefix, c.camera), c.epoch) for c in batch]
            if self.client.delete_all_if(keys):
                n += len(batch)
                continue
            n += sum(self.release(c) for c in batch)
        return n

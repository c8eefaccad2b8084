"""Who should record which camera, balanced by bitrate: the plan one elected member (the
assigner) writes for the whole cluster, the balancing that makes it, and the bitrates the
members measure that feed it.

Counting cameras balances badly: a 16 Mbit/s camera weighs on a recorder as much as sixteen
of 1 Mbit/s. Every member publishes, bound to its lease, the bitrate it measured of each
camera it records (``PREFIX/load/NAME``). The member holding ``PREFIX/leader/assigner``
remembers those figures (a camera keeps its figure when it moves) and writes ``PREFIX/plan``
(camera -> member, with the figures), only while it holds the role: the write compares the
role key's create revision, so a deposed assigner's plan is refused.

The plan is sticky: a camera stays where the last plan put it while that member is live and
not draining, else with the member that holds it, else where the rendezvous answer puts it
(where the members would take it anyway, so planning it costs no handover). When the most or
the least loaded member is more than TOLERANCE off its share (checked every
REBALANCE_EVERY_S; at every tick after a member joined, until even; and when an operator
asks with `vstore cluster rebalance`), cameras move from the most loaded member to the least
loaded one, each time the camera that best evens the two out, until both are within half
the tolerance, at most MAX_MOVES_FRACTION of the cameras a round (a member that joined takes
its whole share at once): each move is a handover (the camera is not recorded for the second
or two the next owner takes to connect), so cameras move only for an imbalance worth it.

Members follow the plan (``ownership.preferred``); a camera the plan does not place (no
assigner elected yet, a camera just configured, its planned owner gone) falls back to
rendezvous hashing, so recording never waits for the assigner."""

from __future__ import annotations

import bisect
import json
import logging
import statistics
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from vstore.base import layout
from vstore.base.errors import ClusterError, NotFound
from vstore.cluster.etcd_client import EtcdClient
from vstore.cluster.leadership import Leadership, role_holder
from vstore.cluster.ownership import MemberInfo, Ownership, preferred

log = logging.getLogger(__name__)

ROLE = "assigner"
PLAN_FORMAT = 1
LOAD_EVERY_S = 10.0  # how often a member publishes its cameras' bitrates
REBALANCE_EVERY_S = 60.0  # how often the assigner looks for a member over its share
TOLERANCE = 0.10  # a member this far over its share of the bitrate starts a rebalance
MAX_MOVES_FRACTION = 0.05  # of the cameras, moved in one rebalance round at most
# A swap moves the difference of two cameras' bitrates for two handovers: worth it only when
# that difference is at least this fraction of the smaller one's bitrate.
SWAP_MIN_DIFFERENCE = 0.25
MIN_MOVES = 8  # ...but at least this many
SMOOTHING = 0.3  # weight of a new bitrate sample against the figure so far


@dataclass(frozen=True)
class Plan:
    """The assigner's answer: ``owners`` camera -> member, with the bitrates it used."""

    owners: dict[str, str]
    rates_bps: dict[str, int] = field(default_factory=dict)
    assigner: str = ""
    epoch: int = 0  # the assigner's epoch (its role key's create revision)
    at_ns: int = 0  # wall time it was written

    def encode(self) -> bytes:
        by_member: dict[str, list[str]] = {}
        for cam, member in sorted(self.owners.items()):
            by_member.setdefault(member, []).append(cam)
        doc = {
            "format": PLAN_FORMAT,
            "assigner": self.assigner,
            "epoch": self.epoch,
            "at_ns": self.at_ns,
            "members": by_member,
            "rates_bps": dict(sorted(self.rates_bps.items())),
        }
        # (zlib: ten thousand cameras' names and figures in tens of kilobytes, well inside
        # etcd's request limit, read by every member each tick)
        return zlib.compress(json.dumps(doc, separators=(",", ":")).encode(), 6)

    @classmethod
    def decode(cls, raw: bytes) -> Plan:
        try:
            doc = json.loads(zlib.decompress(raw))
            if doc["format"] != PLAN_FORMAT:
                raise ValueError(f"format {doc['format']!r}")
            owners = {str(c): str(m) for m, cams in doc["members"].items() for c in cams}
            rates = parse_rates(doc["rates_bps"])
            return cls(owners, rates, str(doc["assigner"]), int(doc["epoch"]), int(doc["at_ns"]))
        except (zlib.error, ValueError, KeyError, TypeError, AttributeError, OverflowError) as exc:
            raise ClusterError(f"the cluster's plan is not one this vstore reads ({exc})") from None

    def loads_bps(self) -> dict[str, int]:
        """Each member's planned bitrate: the figures of the cameras planned for it."""
        out: dict[str, int] = {}
        for cam, member in self.owners.items():
            out[member] = out.get(member, 0) + self.rates_bps.get(cam, 0)
        return out


# No camera records faster than this (bits/s): a figure above it is not one a member measured.
MAX_RATE_BPS = 10**11


def parse_rates(raw: bytes | str | dict[str, object]) -> dict[str, int]:
    """camera -> bits/s of a load key's value (or a plan's figures), each a whole number
    within 0..MAX_RATE_BPS; ValueError for anything else (what a member did not write)."""
    doc = json.loads(raw) if isinstance(raw, bytes | str) else raw
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")  # noqa: TRY004 (one error for any bad value)
    out = {}
    for cam, r in doc.items():
        if isinstance(r, bool) or not isinstance(r, int | float) or not 0 <= r <= MAX_RATE_BPS:
            raise ValueError(f"camera {cam}: {r!r} is not a bitrate")
        out[str(cam)] = int(r)
    return out


class PlanReader:
    """Reads the cluster's plan, decoding it only when it changed. A stored plan that cannot
    be read (written by hand, or by another version) leaves the last one read in force
    (``damaged`` says so, and the assigner writes a readable one over it): a bad value must
    not leave the members without an answer, nor send every camera back to hashing."""

    def __init__(self, client: EtcdClient, prefix: str) -> None:
        self.client = client
        self.key = layout.cluster_plan_key(prefix)
        self._revision = 0
        self._plan: Plan | None = None
        self.damaged = ""  # why the stored plan cannot be read ("": it can)

    def read(self) -> Plan | None:
        kv = self.client.get(self.key)
        if kv is None:
            self._revision, self._plan, self.damaged = 0, None, ""
        elif kv.mod_revision != self._revision:
            self._revision = kv.mod_revision
            try:
                self._plan, self.damaged = Plan.decode(kv.value), ""
            except ClusterError as exc:
                self.damaged = str(exc)
        return self._plan


def balance(
    cameras: Iterable[str],
    members: list[MemberInfo],
    planned: Mapping[str, str],
    held: Mapping[str, str],
    rates_bps: Mapping[str, float],
    pins: Mapping[str, str],
    *,
    rebalance: bool,
    max_moves: int | None = None,
    receivers: set[str] | None = None,
) -> dict[str, str]:
    """camera -> member for every camera that has a member to record it (see the module's
    docstring): pins, then the planned owner, then the holder, then the rendezvous answer;
    with ``rebalance``, cameras moved off members over their share (to ``receivers`` only,
    when given)."""
    takers = {m.name: max(m.weight, 1e-9) for m in members if not m.draining}
    cams = sorted(set(cameras))
    rate = _rates_of(cams, rates_bps)
    owners: dict[str, str] = {}
    load = dict.fromkeys(takers, 0.0)
    movable: dict[str, list[tuple[float, str]]] = {n: [] for n in takers}
    for cam in cams:
        pin = pins.get(cam)
        if pin is not None and pin in takers:  # (a draining member hands its pins over)
            owners[cam] = pin
            load[pin] += rate[cam]
            continue
        now = planned.get(cam)
        if now not in takers:
            now = held.get(cam)
        if now not in takers:
            # Nobody to keep it: where the members' own fallback would take it anyway, so
            # planning it costs no handover (the rebalance moves it if that is uneven).
            now = preferred(cam, members, {})
        if now is not None:
            owners[cam] = now
            load[now] += rate[cam]
            movable[now].append((rate[cam], cam))
    if rebalance and takers:
        for pairs in movable.values():
            pairs.sort()
        budget = max_moves
        if budget is None:
            budget = max(MIN_MOVES, int(len(cams) * MAX_MOVES_FRACTION))
        _even_out(owners, load, movable, takers, budget, receivers)
    return owners


def _rates_of(cams: list[str], rates_bps: Mapping[str, float]) -> dict[str, float]:
    """Each camera's bitrate; one not measured yet counts as the median of those that were
    (as 1 when none was: then cameras balance by count)."""
    known = [float(rates_bps[c]) for c in cams if rates_bps.get(c, 0) > 0]
    guess = statistics.median(known) if known else 1.0
    return {c: float(rates_bps[c]) if rates_bps.get(c, 0) > 0 else guess for c in cams}


def _even_out(
    owners: dict[str, str],
    load: dict[str, float],
    movable: dict[str, list[tuple[float, str]]],
    weight: dict[str, float],
    budget: int,
    receivers: set[str] | None = None,
) -> None:
    """Move cameras (each list in ``movable`` sorted by rate) from the most loaded member to
    the least loaded of ``receivers`` (every member when None) while that evens them out,
    at most ``budget`` handovers; a swap of two cameras when no single move helps."""
    total_w = sum(weight.values())
    total = sum(load.values())
    share = {n: total * w / total_w for n, w in weight.items()}
    takers = [n for n in weight if receivers is None or n in receivers]
    if not takers:
        return

    def extremes() -> tuple[str, str]:
        return (
            max(weight, key=lambda n: (load[n] / weight[n], n)),
            min(takers, key=lambda n: (load[n] / weight[n], n)),
        )

    def off(tolerance: float, *names: str) -> bool:
        return any(abs(load[n] - share[n]) > share[n] * tolerance + 1e-9 for n in names)

    if not off(TOLERANCE, *extremes()):
        return
    while budget > 0:
        donor, taker = extremes()
        if donor == taker or not off(TOLERANCE / 2, donor, taker):
            return
        wd, wt = weight[donor], weight[taker]
        before = load[donor] / wd

        ld, lt = load[donor], load[taker]

        def after(moved: float, ld: float = ld, lt: float = lt, wd: float = wd,
                  wt: float = wt) -> float:  # fmt: skip
            """The higher of the two loads after moving ``moved`` (``before``: not worth a
            handover). One that leaves the taker above the donor must at least halve their
            difference: each move is a second or two of the camera not recorded, and one
            that only trades which member carries the odd camera (four like cameras on
            three members, their bitrates a few percent apart) would be made back at the
            next check, for ever."""
            d, t = (ld - moved) / wd, (lt + moved) / wt
            if t > d and t - d > (ld / wd - lt / wt) / 2:
                return ld / wd  # (before the move: no gain)
            return max(d, t)

        # The rate that leaves both equal (loads normalised by weight): the camera nearest
        # it either side, or (when no single camera helps, and two handovers remain) the
        # swap whose difference is nearest it.
        ideal = (load[donor] * wt - load[taker] * wd) / (wd + wt)
        give, take = movable[donor], movable[taker]
        best: tuple[float, int, int] | None = None  # (after, donor's index, taker's or -1)
        i = bisect.bisect_left(give, (ideal, ""))
        for j in (i - 1, i):
            a = after(give[j][0]) if 0 <= j < len(give) else before
            if a < before - 1e-9 and (best is None or a < best[0]):
                best = (a, j, -1)
        if best is None and budget >= 2:
            for k, (ry, _cam) in enumerate(take):
                i = bisect.bisect_left(give, (ideal + ry, ""))
                for j in (i - 1, i):
                    # (a swap whose difference is within the bitrates' measuring noise
                    # only trades two handovers for nothing)
                    if 0 <= j < len(give) and give[j][0] - ry >= ry * SWAP_MIN_DIFFERENCE:
                        a = after(give[j][0] - ry)
                        if a < before - 1e-9 and (best is None or a < best[0]):
                            best = (a, j, k)
        if best is None:
            return  # no camera, nor pair of cameras, evens these two out any further
        r, cam = give.pop(best[1])
        owners[cam] = taker
        load[donor] -= r
        load[taker] += r
        budget -= 1
        if best[2] >= 0:
            ry, back = take.pop(best[2])
            bisect.insort(give, (ry, back))
            owners[back] = donor
            load[donor] += ry
            load[taker] -= ry
            budget -= 1
        bisect.insort(take, (r, cam))


class LoadMeter:
    """The bitrate of each camera this member records, from the bytes its writer stored
    between two samples, smoothed (a camera's bitrate wanders with what it sees)."""

    def __init__(self, recorded_bytes: Callable[[], dict[str, int]]) -> None:
        self._recorded = recorded_bytes
        self._last: dict[str, tuple[float, int]] = {}
        self.rates_bps: dict[str, float] = {}

    def sample(self) -> dict[str, int]:
        now = time.monotonic()
        got = self._recorded()
        for cam, n in got.items():
            prev = self._last.get(cam)
            self._last[cam] = (now, n)
            if prev is None or n < prev[1] or now <= prev[0]:
                continue  # first sight, or a new writer: the next sample tells
            r = (n - prev[1]) * 8 / (now - prev[0])
            old = self.rates_bps.get(cam)
            self.rates_bps[cam] = r if old is None else old + SMOOTHING * (r - old)
        for cam in [c for c in self._last if c not in got]:
            del self._last[cam]
            self.rates_bps.pop(cam, None)
        return {c: round(r) for c, r in sorted(self.rates_bps.items()) if r > 0}


class Assigner:
    """The plan-writing side, acting while its member holds the assigner's role."""

    def __init__(
        self,
        client: EtcdClient,
        prefix: str,
        lead: Leadership,
        pins: Mapping[str, str],
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.lead = lead
        self.pins = dict(pins)
        self._rates: dict[str, int] = {}
        self._epoch = 0  # the epoch this assigner last acted at
        self._takers: set[str] = set()  # the members taking cameras at the last tick
        self._evening = False  # rounds of moves until the loads are even (a member joined)
        self._joined: set[str] = set()  # the members that joined: what evening moves go to
        self._bad_loads: dict[str, int] = {}  # load keys warned of, at their revision
        self._next_rebalance_s = 0.0
        self.moves = 0  # cameras this assigner moved between live members

    def tick(
        self,
        cameras: Iterable[str],
        members: list[MemberInfo],
        held: Mapping[str, str],
        plan: Plan | None,
        damaged: bool = False,
    ) -> Plan | None:
        """Plan again; write the plan when it changed (or the stored one is ``damaged``: not
        the ``plan`` read before it). The plan written, or None."""
        epoch = self.lead.epoch()
        if not epoch:
            return None
        if plan is not None:  # a new assigner starts from its predecessor's figures
            for cam, r in plan.rates_bps.items():
                self._rates.setdefault(cam, r)
        head = layout.cluster_loads_prefix(self.prefix)
        for kv in self.client.get_prefix(head):
            try:
                self._rates.update(parse_rates(kv.value))
            except ValueError as exc:
                if self._bad_loads.get(kv.key) != kv.mod_revision:
                    self._bad_loads[kv.key] = kv.mod_revision
                    log.warning("cluster: %s is not a load a member wrote (%s); skipped",
                                kv.key, exc)  # fmt: skip
        now_s = time.monotonic()
        takers = {m.name for m in members if not m.draining}
        if epoch != self._epoch:
            # Newly elected: the first periodic check waits a period, so that a cluster whose
            # assigner died does not move cameras at once on figures not measured again yet.
            self._epoch = epoch
            self._next_rebalance_s = now_s + REBALANCE_EVERY_S
        elif takers - self._takers:
            # A member joined (or came back from a drain): it takes its share from the
            # others, and only it (the others' balance is the periodic check's business).
            self._evening = True
            self._joined |= takers - self._takers
        self._joined &= takers
        self._takers = takers
        asked = self.client.get(layout.cluster_rebalance_key(self.prefix)) is not None
        periodic = now_s >= self._next_rebalance_s
        rebalance = asked or periodic or self._evening
        if rebalance:
            self._next_rebalance_s = now_s + REBALANCE_EVERY_S
        cams = sorted(set(cameras))
        before = plan.owners if plan is not None else {}
        # A member that joined takes its whole share in one round, as rendezvous hashing
        # would give it: the bound on moves is against chasing figures, not against joins.
        joining = self._evening and not (asked or periodic)
        owners = balance(
            cams, members, before, held, self._rates, self.pins, rebalance=rebalance,
            max_moves=len(cams) if joining else None,
            receivers=set(self._joined) if joining else None,
        )  # fmt: skip
        rates = self._rates = {c: self._rates[c] for c in cams if c in self._rates}
        # Moved to even the loads out: from a member that could have kept it (a drained or
        # dead member's cameras go whatever the balance).
        moved = [c for c, m in owners.items() if before.get(c) in takers and before[c] != m]
        if rebalance and not moved:  # even now: the rounds asked for are done
            self._evening = False
            self._joined.clear()
            if asked:
                self.client.delete(layout.cluster_rebalance_key(self.prefix))
        unchanged = plan is not None and plan.owners == owners and plan.epoch == epoch
        if unchanged and not damaged and (not rebalance or plan.rates_bps == rates):
            return None
        if not self.lead.leads():
            return None
        new = Plan(owners, rates, self.lead.member.name, epoch, time.time_ns())
        key = layout.cluster_plan_key(self.prefix)
        if not self.client.put_if(key, new.encode(), self.lead.key, epoch):
            return None  # deposed meanwhile: the next assigner plans
        if moved:
            self.moves += len(moved)
            log.info("cluster: the plan moves %d camera(s) to even the members' bitrates out",
                     len(moved))  # fmt: skip
        return new


def ask_rebalance(client: EtcdClient, prefix: str) -> str | None:
    """Ask the assigner to even the members' loads out now, round after round, until every
    member is within half the tolerance of its share (it removes the request then). The
    assigner's name, or None while none is elected; NotFound when no member runs under
    ``prefix`` (a mistyped prefix must not leave a request behind)."""
    if not Ownership(client, prefix).members():
        raise NotFound(f"cluster {prefix} has no member running: nothing to rebalance (is the "
                       "prefix right?)")  # fmt: skip
    client.put(layout.cluster_rebalance_key(prefix), b"1")
    holder = role_holder(client, prefix, ROLE)
    return holder[0] if holder is not None else None

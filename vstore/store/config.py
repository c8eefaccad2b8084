"""Store configuration: ``vstore.toml`` inside the store, parsed into frozen, validated settings.

Every setting has a default, so a store works with no file at all; limits are enforced here so
that nothing downstream has to re-check them.
"""

# No `from __future__ import annotations` here: typing.NamedTuple compiles every string
# annotation when the module loads, a few ms of every command's start-up.

import re
import socket
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from vstore.base import cpus
from vstore.base.errors import ConfigError, UsageError
from vstore.base.layout import validate_camera_id
from vstore.base.timebase import parse_age_ns, parse_duration_ns

CONFIG_TEMPLATE = """\
# vstore store configuration. Every value shown is the default; edit and keep what you need.
[store]
# Target segment length. Segments are always cut at a keyframe, so real ones run a GOP longer.
segment_duration_s = 60
# 0 = fsync after every chunk (GOP); N > 0 = at most every N seconds (a crash may lose up to N s).
fsync_interval_s = 0
# A GOP longer than this many bytes is split into continuation chunks (bounds crash loss).
max_chunk_bytes = 33554432
# Once fsynced, footage leaves the page cache (it is rarely read again soon; keeping it evicts
# the index and costs CPU). false keeps it cached, as plain writes do.
drop_page_cache = true
# Camera media clock vs receive wall clock: beyond this the run is re-anchored (discontinuity).
max_clock_drift_s = 30
# Packets buffered between a camera's source and its writer before back-pressure applies.
queue_packets = 2048
# "auto": MPEG-TS over tcp:// or udp:// is demuxed by vstore's own compiled demuxer (FFmpeg
# only reads the codec parameters of the first seconds); "ffmpeg": FFmpeg demuxes everything.
demuxer = "auto"

# Retention (`vstore retention run`): footage older than max_age or beyond max_bytes per
# camera is deleted oldest first, and the oldest footage of any camera when free space falls
# below min_free. Held footage (`vstore hold add`) is never deleted.
[retention]
# max_age = "30d"
# max_bytes = "2TB"
# min_free = "10%"            # or a size such as "50GB"
disk_full = "overwrite-oldest"  # or "stop-recording"
every = "5m"                    # how often `vstore serve` runs it ("off": never)
# [retention.groups.traffic]      # the cameras of [groups.traffic]
# max_age = "30d"
# [retention.cameras.lobby]
# max_age = "90d"
# tiered_max_age = "365d"    # tiered (S3) footage may be kept longer than hot footage

# Tiering (`vstore tier run`): sealed segments older than older_than move to object storage
# and stay in the same index. Credentials and endpoint come from the AWS environment
# (AWS_ENDPOINT_URL for MinIO/Ceph).
[tier]
# url = "s3://my-bucket/site-a"     # or a directory
older_than = "7d"                   # hot age: how long segments stay on local disk
parallel = 2                        # concurrent uploads
max_rate = "auto"                   # footage per second: "auto" (4x what the cameras record,
                                    # at least 20 MB/s; spares live recording), "none", "50MB"
cache = "1GiB"                      # local cache of ranged reads of tiered footage (0 = off)
legal_hold = true                   # also put S3 object legal holds on held, tiered footage
every = "1h"                        # how often `vstore serve` tiers, when url is set
# [tier.cameras.lobby]
# older_than = "1d"
# [tier.groups.traffic]           # the cameras of [groups.traffic]
# older_than = "2d"

# Camera groups (districts, agencies, purposes): what `vstore serve`'s principals are scoped
# to, and what [retention.groups.NAME] and [tier.groups.NAME] apply to. A camera may be in
# several groups.
# [groups.traffic]
# cameras = ["cross-1", "cross-2"]

# `vstore serve`: what its HTTP clients may do (the defaults shown).
# [service]
# max_clip_s = 86400          # the longest clip one request may ask for
# require_purpose = false     # true: clips and snapshots must give a purpose (a case number)
# max_exports = 4             # concurrent clip downloads (and packages built) per principal
# rate_per_s = 50             # requests per second per principal (bursts of twice that)
# write_timeout_s = 60        # a client that takes no bytes this long is dropped
# chain_sign_every_s = 60     # each camera's recording-chain head is signed again this often
# keep_exports_s = 604800     # a package built over the API is kept this long (7 days)
# recorders = 1               # processes recording the cameras ("auto": one per core)
# pin_recorders = true        # each recorder process on a core of its own, when there are
#                             # as many (the node's own process is never pinned)
# tls_cert = "/etc/vstore/node.crt"   # HTTPS when both are set
# tls_key = "/etc/vstore/node.key"
# url = "https://node1.city.example:8480"   # how other machines reach this API (default: the
#                             # listen address): bucket readers fetch footage not tiered yet

# `vstore serve` also takes bearer JWTs from an identity provider (Keycloak or similar),
# verified against its JWKS; claims map to a role and camera groups:
# [auth.jwt]
# issuer = "https://sso.city.example/realms/city"
# audience = "vstore"
# jwks_url = "https://sso.city.example/realms/city/protocol/openid-connect/certs"
# name_claim = "preferred_username"
# role_claim = "roles"
# groups_claim = "groups"
# [auth.jwt.roles]                 # provider role -> viewer | investigator | custodian | ...
# "police-detective" = "investigator"
# [auth.jwt.groups]                # provider group -> camera group (default: the same name)
# "/districts/7" = "district-7"

# Signing keys (exports, recording chains, audit digests) live in the store's keys/ and are
# made when first needed; keep them elsewhere (they must be there already) with:
# [keys]
# dir = "/run/secrets/vstore-keys"

# The audit log is kept forever unless it has its own retention (footage retention never
# touches it). Pruned records must be covered by a signed digest first; what is pruned is
# itself recorded, and the records that account for a camera's deleted footage in its
# recording chain are folded into a signed chain base first.
# [audit]
# max_age = "3650d"

# Many nodes, one city (docs/deploy.md): the nodes share the cameras through etcd, each
# recording the ones its member owns, and one bucket ([tier] url) for old footage, whose
# expired footage one elected node deletes for all of them.
# [cluster]
# etcd = ["http://etcd1:2379", "http://etcd2:2379", "http://etcd3:2379"]
# name = "node1"                    # each node its own (default: the host name)
# prefix = "/vstore/city"           # the cluster's keys in etcd, the same on every node
# lease_ttl_s = 10                  # a node silent this long loses its cameras to the others
# weight = 1.0                      # its share of the cameras against the others'
# pins = {junction-1 = "node2"}     # cameras a given node must record
# deletion_delay_s = 600            # objects go this long after the catalog stops listing
#                                   # them (default: twice [retention] every)

# Per-camera settings override [store] and may name a source for `vstore record --all`.
# name, location and timezone (IANA; [store] may set a default) go into evidence exports.
# [cameras.front-door]
# url = "rtsp://192.0.2.10/stream1"
# segment_duration_s = 30
# name = "Front door"
# location = "Town hall, Main St 1, entrance"
# timezone = "Europe/Berlin"
"""


class CameraSettings(NamedTuple):
    """Settings that a camera's writer uses; store-wide values with per-camera overrides."""

    segment_duration_s: float = 60.0
    fsync_interval_s: float = 0.0
    max_chunk_bytes: int = 32 * 1024 * 1024
    max_clock_drift_s: float = 30.0
    queue_packets: int = 2048
    url: str | None = None
    # "auto": MPEG-TS over tcp:// and udp:// is demuxed natively (PyAV only probes the first
    # seconds); "ffmpeg": PyAV demuxes every source.
    demuxer: str = "auto"
    drop_page_cache: bool = True
    # What an evidence manifest says of the camera: its name, where it is, and the IANA time
    # zone its local times are given in (times are recorded in UTC either way).
    name: str | None = None
    location: str | None = None
    timezone: str | None = None

    def validate(self, where: str) -> None:
        if not 1.0 <= self.segment_duration_s <= 3600.0:
            raise ConfigError(f"{where}: segment_duration_s must be within 1..3600")
        if not 0.0 <= self.fsync_interval_s <= 60.0:
            raise ConfigError(f"{where}: fsync_interval_s must be within 0..60")
        if not 64 * 1024 <= self.max_chunk_bytes <= 1024 * 1024 * 1024:
            raise ConfigError(f"{where}: max_chunk_bytes must be within 64 KiB..1 GiB")
        if not 1.0 <= self.max_clock_drift_s <= 86400.0:
            raise ConfigError(f"{where}: max_clock_drift_s must be within 1..86400")
        if not 16 <= self.queue_packets <= 1_000_000:
            raise ConfigError(f"{where}: queue_packets must be within 16..1000000")
        if self.demuxer not in ("auto", "ffmpeg"):
            raise ConfigError(f'{where}: demuxer must be "auto" or "ffmpeg"')
        if self.timezone is not None:
            import zoneinfo

            try:
                zoneinfo.ZoneInfo(self.timezone)
            except (ValueError, zoneinfo.ZoneInfoNotFoundError):
                raise ConfigError(
                    f"{where}: timezone {self.timezone!r} is not an IANA time zone "
                    '(such as "Europe/Berlin")'
                ) from None


class RetentionPolicy(NamedTuple):
    """How long and how much of one camera's footage to keep (None: no limit)."""

    max_age_ns: int | None = None
    max_bytes: int | None = None  # all of the camera's footage, hot and tiered
    tiered_max_age_ns: int | None = None  # tiered footage's own (longer) age; None: max_age

    def age_limit_ns(self, tiered: bool) -> int | None:
        if tiered and self.tiered_max_age_ns is not None:
            return self.tiered_max_age_ns
        return self.max_age_ns

    def overridden(
        self,
        max_age_ns: int | None = None,
        tiered_max_age_ns: int | None = None,
        max_bytes: int | None = None,
    ) -> "RetentionPolicy":
        """This policy with one run's overrides, each changing only what it names: an age
        for local footage leaves tiered footage at the age the policy gives it (its own, or
        else the policy's max_age), never at the override's."""
        tiered = self.tiered_max_age_ns if self.tiered_max_age_ns is not None else self.max_age_ns
        return RetentionPolicy(
            max_age_ns if max_age_ns is not None else self.max_age_ns,
            max_bytes if max_bytes is not None else self.max_bytes,
            tiered_max_age_ns if tiered_max_age_ns is not None else tiered,
        )


DISK_FULL_ACTIONS = ("overwrite-oldest", "stop-recording")


POLICY_KEYS = ("max_age", "max_bytes", "tiered_max_age")  # as written in vstore.toml
_POLICY_FIELDS = dict(zip(POLICY_KEYS, RetentionPolicy._fields, strict=True))


class RetentionConfig(NamedTuple):
    """[retention]: a default policy, per-group and per-camera policies, the disk watermark
    and the declared disk-full behaviour. Groups and cameras hold only the keys their
    sections set (field name -> value); a camera's policy resolves key by key."""

    default: RetentionPolicy = RetentionPolicy()
    groups: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {}  # noqa: RUF012 - shared default, never mutated
    cameras: dict[str, dict[str, Any]] = {}  # noqa: RUF012 - shared default, never mutated
    min_free_bytes: int | None = None
    min_free_ratio: float | None = None
    disk_full: str = "overwrite-oldest"
    every_ns: int | None = 300 * 10**9  # how often `vstore serve` runs it (None: never)

    def policy(self, camera_id: str) -> RetentionPolicy:
        """Each setting from the camera's own section, else from the first group naming the
        camera that sets it, else from [retention]."""
        return RetentionPolicy(*(v for v, _src in self.policy_sources(camera_id).values()))

    def policy_sources(self, camera_id: str) -> dict[str, tuple[Any, str]]:
        """Setting (field name) -> (value, the section it comes from), in policy order."""
        out: dict[str, tuple[Any, str]] = {}
        own = self.cameras.get(camera_id, {})
        member_of = [(n, t) for n, (m, t) in self.groups.items() if camera_id in m]
        for name in RetentionPolicy._fields:
            if name in own:
                out[name] = (own[name], f"[retention.cameras.{camera_id}]")
                continue
            for group, table in member_of:
                if name in table:
                    out[name] = (table[name], f"[retention.groups.{group}]")
                    break
            else:
                value = getattr(self.default, name)
                out[name] = (value, "[retention]" if value is not None else "default")
        # Tiered footage is kept at least as long as local footage: a store-wide
        # tiered_max_age never cuts short a camera's or group's longer max_age.
        age, tiered = out["max_age_ns"][0], out["tiered_max_age_ns"][0]
        if age is not None and tiered is not None and tiered < age:
            out["tiered_max_age_ns"] = (age, f"max_age (longer than {out['tiered_max_age_ns'][1]})")
        return out


class TierConfig(NamedTuple):
    """[tier]: where cold segments go and when (``vstore tier run``)."""

    url: str | None = None  # s3://BUCKET/PREFIX or a directory
    older_than_ns: int = 7 * 86400 * 10**9
    groups: dict[str, tuple[tuple[str, ...], int]] = {}  # noqa: RUF012 - shared default, never mutated
    cameras: dict[str, int] = {}  # per-camera hot age  # noqa: RUF012 - shared default, never mutated
    parallel: int = 2  # concurrent uploads
    # How fast footage moves (bytes/s, 0: uncapped), or AUTO_RATE: a multiple of the
    # cameras' own footage rate (vstore.lifecycle.tiering.auto_rate_bytes).
    max_rate_bytes: int | str = "auto"
    cache_bytes: int = 1024**3  # local cache of ranged reads from the tier
    legal_hold: bool = True  # mirror vstore holds as S3 object legal holds when supported
    every_ns: int | None = 3600 * 10**9  # how often `vstore serve` tiers (None: never)

    def older_than_for(self, camera_id: str) -> int:
        """The camera's hot age: its own, else its first group's, else the store's."""
        return _for_camera(camera_id, self.cameras, self.groups, self.older_than_ns)


def _for_camera(camera_id: str, cameras: dict[str, Any], groups: dict[str, Any], default: Any):
    """A setting's value for a camera: its own, else its first group's, else the default."""
    if camera_id in cameras:
        return cameras[camera_id]
    for members, value in groups.values():
        if camera_id in members:
            return value
    return default


class ServiceConfig(NamedTuple):
    """[service]: what ``vstore serve`` allows its clients."""

    max_clip_s: float = 86400.0  # the longest clip one HTTP request may ask for
    require_purpose: bool = False  # clips and snapshots must say why (a case number)
    max_exports: int = 4  # concurrent clip downloads, and packages built, per principal
    rate_per_s: float = 50.0  # requests per second per principal (bursts of twice that)
    tls_cert: str | None = None  # PEM files: HTTPS when both are set
    tls_key: str | None = None
    write_timeout_s: float = 60.0  # a client that takes no bytes this long is dropped
    # How often the node signs each camera's recording-chain head again (besides each seal).
    chain_sign_every_s: float = 60.0
    # How long a package built over the API stays on the node for its asker to download:
    # a copy of footage, it takes the disk recording needs (the audit log keeps its record).
    keep_exports_s: float = 7 * 86400.0
    # The URL other machines reach this node's API by (None: the address it listens on),
    # written to the bucket so that readers fetch footage not tiered yet from it.
    url: str | None = None
    # Recorder processes the node's cameras are spread over (1: the node records them
    # itself); "auto" in vstore.toml is one per core. vstore/service/recorder_pool.py.
    recorders: int = 1
    # Each recorder process kept to a core of its own (when recorders >= 2 and there are as
    # many physical cores): measured, 15-20 % more recorded per CPU second than left to the
    # scheduler, which moves a process's threads between cores at every hand-over.
    pin_recorders: bool = True


class ClusterConfig(NamedTuple):
    """[cluster]: the node records only the cameras it owns among the members of a cluster
    that share etcd (docs/design/cluster.md). ``etcd`` empty: no cluster (all cameras)."""

    etcd: tuple[str, ...] = ()  # client URLs of the etcd members
    name: str = ""  # this member's name in the cluster ("" : the host name)
    prefix: str = "/vstore/default"  # the cluster's keys in etcd
    lease_ttl_s: int = 10  # a member silent this long loses its cameras to the others
    weight: float = 1.0  # its share of the cameras against the others'
    pins: dict[str, str] = {}  # noqa: RUF012 - camera -> member that must record it
    # How long the elected deleter keeps a tiered object after the catalog stopped listing it
    # (None: twice [retention] every).
    deletion_delay_s: float | None = None

    @property
    def member(self) -> str:
        """This node's member name: ``name``, else the host's short name ("" : no cluster)."""
        if not self.etcd:
            return ""
        return self.name or socket.gethostname().split(".")[0]


def valid_cluster_prefix(prefix: object) -> bool:
    """Whether ``prefix`` is a cluster's key path in etcd: "/vstore/city", no trailing "/"."""
    return isinstance(prefix, str) and re.fullmatch(r"(/[\w.-]+)+", prefix) is not None


class StoreConfig(NamedTuple):
    defaults: CameraSettings = CameraSettings()
    cameras: dict[str, CameraSettings] = {}  # noqa: RUF012 - shared default, never mutated
    retention: RetentionConfig = RetentionConfig()
    tier: TierConfig = TierConfig()
    # [groups.NAME] cameras = [...]: districts, agencies, purposes; what access is scoped by.
    groups: dict[str, tuple[str, ...]] = {}  # noqa: RUF012 - shared default, never mutated
    service: ServiceConfig = ServiceConfig()
    notes: tuple[str, ...] = ()  # what the file should change (old forms still read)
    # [auth]: how `vstore serve` authenticates beyond its own tokens ([auth.jwt]), as written;
    # the service parses and checks it when it starts.
    auth: dict[str, Any] = {}  # noqa: RUF012 - shared default, never mutated
    # [keys] dir: the signing keys kept apart from the store (another volume, a secrets
    # manager's mount); None: the store's own keys/.
    keys_dir: str | None = None
    # [audit] max_age: how long audit records are kept (None: forever).
    audit_max_age_ns: int | None = None
    cluster: ClusterConfig = ClusterConfig()

    def camera(self, camera_id: str) -> CameraSettings:
        return self.cameras.get(camera_id, self.defaults)


_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


AUTO_RATE = "auto"
MIN_RATE_BYTES = 64_000  # (a job paced slower would run for days)


def parse_rate(text: str | int) -> int | str:
    """A tier job's ``max_rate``: ``auto``, ``none`` (0: uncapped) or a size per second
    such as ``50MB``."""
    if isinstance(text, str) and text.strip().lower() in (AUTO_RATE, "none"):
        return AUTO_RATE if text.strip().lower() == AUTO_RATE else 0
    try:
        rate = parse_size_bytes(text)
    except UsageError:
        raise UsageError(f"bad rate {text!r}: use auto, none or a size such as 50MB") from None
    return _at_least_min_rate(text, rate)


def _at_least_min_rate(text: str | int, rate: int) -> int:
    if 0 < rate < MIN_RATE_BYTES:
        raise UsageError(f"{text!r} is below the least rate, 64KB a second: it would never finish")
    return rate


def parse_fixed_rate(text: str) -> int:
    """A pace of a job that has no cameras of its own to follow (an import, a check): a size
    per second such as ``50MB``, or ``none`` (0: as fast as the disk goes)."""
    if text.strip().lower() == "none":
        return 0
    try:
        rate = parse_size_bytes(text)
    except UsageError:
        raise UsageError(f"--max-rate {text}: a size per second such as 50MB, or none") from None
    return _at_least_min_rate(text, rate)


def parse_size_bytes(text: str | int) -> int:
    """``500GB``, ``2TiB``, ``1048576B`` -> bytes. Text needs its unit (``B`` for bytes): a
    bare ``500`` is refused, as a bare age is, since it reads as 500 of anything. Only 0
    needs none. An int is a size already in bytes (what the config parsed)."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise ConfigError(f"negative size: {text}")
        return text

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(text))
    unit = m.group(2).lower() if m else None
    if m is None or unit not in _SIZE_UNITS or (len(m.group(2)) > 1 and m.group(2)[-1] == "b"):
        # ("Mb", "kb": bits or bytes? only B means bytes)
        raise UsageError(f"bad size {text!r}: use e.g. 500GB, 2TiB or 1048576B")
    value = float(m.group(1))
    if not unit and value != 0:
        raise UsageError(
            f"size {text!r} needs a unit: {m.group(1)}B for bytes, or e.g. {m.group(1)}GB"
        )
    return int(value * _SIZE_UNITS[unit])


def _config_size(value: Any) -> int:
    """A size as written in vstore.toml: a string with its unit (a bare TOML number is
    refused like bare text, 0 aside)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise UsageError(f"bad size {value!r}: use e.g. 500GB, 2TiB or 1048576B")
    return parse_size_bytes(value)


def retention_limit(value: int, what: str) -> int:
    """A retention age or size, which must be above 0: 0 would delete all footage."""
    if value <= 0:
        raise UsageError(f"{what} must be more than 0 (0 would delete all unheld footage)")
    return value


def _policy_keys(table: dict[str, Any], where: str) -> dict[str, Any]:
    """The policy settings a section sets (field name -> value), each checked."""
    unknown = set(table) - {*POLICY_KEYS, "cameras"}
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(sorted(unknown))}")
    out: dict[str, Any] = {}
    try:
        for key in POLICY_KEYS:
            if key not in table:
                continue
            if key == "max_bytes":
                value = _config_size(table[key])
            else:
                value = parse_age_ns(table[key], key)
            out[_POLICY_FIELDS[key]] = retention_limit(value, key)
    except UsageError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    return out


def _group_members(table: dict[str, Any], where: str) -> tuple[str, ...]:
    """The ``cameras = [...]`` of a [*.groups.NAME] table, each a valid camera id."""
    members = table.get("cameras", [])
    if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
        raise ConfigError(f"{where}: cameras must be a list")
    for m in members:
        validate_camera_id(m)
    return tuple(members)


def _policy_group(
    name: str,
    table: dict[str, Any],
    sect: str,
    shared: dict[str, tuple[str, ...]],
    notes: list[str],
) -> tuple[str, ...]:
    """The cameras of a [retention.groups.NAME] or [tier.groups.NAME] table: those of
    [groups.NAME], the one definition of groups that access, retention and tiering share.
    A table that lists its own cameras (as before [groups] existed) is still read, with a
    note saying how to move the list."""
    if "cameras" not in table:
        if name not in shared:
            raise ConfigError(
                f"{sect}: no [groups.{name}] defines its cameras (add [groups.{name}] "
                f'cameras = ["..."])'
            )
        return shared[name]
    own = _group_members(table, sect)
    if name in shared and set(shared[name]) != set(own):
        raise ConfigError(
            f"{sect} lists cameras that differ from [groups.{name}]: keep the list in "
            f"[groups.{name}] only"
        )
    notes.append(
        f"{sect} lists its own cameras: move the list to [groups.{name}] cameras = [...] and "
        "leave it out here (one definition of a group serves access, retention and tiering)"
    )
    return own


def _retention(
    doc: dict[str, Any],
    where: str,
    shared: dict[str, tuple[str, ...]] | None = None,
    notes: list[str] | None = None,
) -> RetentionConfig:
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: [retention] must be a table")
    top = {k: v for k, v in doc.items() if not isinstance(v, dict)}
    extra = set(top) - {"max_age", "max_bytes", "tiered_max_age", "min_free", "disk_full", "every"}
    if extra:
        raise ConfigError(f"{where} [retention]: unknown setting(s) {', '.join(sorted(extra))}")
    default = RetentionPolicy(
        **_policy_keys({k: v for k, v in top.items() if k in POLICY_KEYS}, f"{where} [retention]")
    )
    min_free_bytes = min_free_ratio = None
    if "min_free" in top:
        text = str(top["min_free"]).strip()
        if text.endswith("%"):
            try:
                min_free_ratio = float(text[:-1]) / 100
            except ValueError:
                raise ConfigError(f"{where}: bad min_free {text!r}") from None
            if not 0 <= min_free_ratio < 1:
                raise ConfigError(f"{where}: min_free must be within 0%..99%")
        else:
            try:
                min_free_bytes = _config_size(top["min_free"])
            except Exception as exc:
                raise ConfigError(f"{where}: {exc}") from exc
    disk_full = top.get("disk_full", "overwrite-oldest")
    if disk_full not in DISK_FULL_ACTIONS:
        raise ConfigError(f"{where}: disk_full must be one of {', '.join(DISK_FULL_ACTIONS)}")
    groups: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {}
    for name, table in (doc.get("groups") or {}).items():
        sect = f"{where} [retention.groups.{name}]"
        groups[name] = (
            _policy_group(name, table, sect, shared or {}, notes if notes is not None else []),
            _policy_keys(table, sect),
        )
    cameras: dict[str, dict[str, Any]] = {}
    for cam, table in (doc.get("cameras") or {}).items():
        validate_camera_id(cam)
        if "cameras" in table:
            raise ConfigError(f"{where} [retention.cameras.{cam}]: unknown setting(s) cameras")
        cameras[cam] = _policy_keys(table, f"{where} [retention.cameras.{cam}]")
    every = _every(top.get("every", "5m"), f"{where} [retention]")
    return RetentionConfig(
        default, groups, cameras, min_free_bytes, min_free_ratio, disk_full, every
    )


def _every(value: Any, where: str) -> int | None:
    """A schedule's period ("5m", "1h"); "off" or 0: never."""
    if value in ("off", 0, "0"):
        return None
    try:
        ns = parse_duration_ns(str(value))
    except UsageError as exc:
        raise ConfigError(f"{where}: every: {exc}") from exc
    if not 10 * 10**9 <= ns <= 7 * 86400 * 10**9:
        raise ConfigError(f'{where}: every must be within 10s..7d (or "off")')
    return ns


_NAMES = set(CameraSettings._fields)


def _settings(base: CameraSettings, table: dict[str, Any], where: str) -> CameraSettings:
    unknown = set(table) - _NAMES
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for name in CameraSettings._fields:
        if name not in table:
            continue
        v = table[name]
        if name in ("url", "demuxer", "name", "location", "timezone"):
            if not isinstance(v, str):
                raise ConfigError(f"{where}: {name} must be a string")
        elif name == "drop_page_cache":
            if not isinstance(v, bool):
                raise ConfigError(f"{where}: {name} must be true or false")
        elif name in ("max_chunk_bytes", "queue_packets"):
            if not isinstance(v, int) or isinstance(v, bool):
                raise ConfigError(f"{where}: {name} must be an integer")
        elif not isinstance(v, int | float) or isinstance(v, bool):
            raise ConfigError(f"{where}: {name} must be a number")
        else:
            v = float(v)
        values[name] = v
    out = base._replace(**values)
    out.validate(where)
    return out


def load_config(path: Path) -> StoreConfig:
    """Parse vstore.toml; a missing file means all defaults."""
    if not path.exists():
        return StoreConfig()
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return parse_config(text, path)


def parse_config(text: str, path: Path) -> StoreConfig:
    """The configuration ``text`` says (``path`` names it in errors)."""
    import tomllib  # only when there is a file: start-up of read-only commands stays short

    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    unknown = set(doc) - {
        "store", "cameras", "retention", "tier", "groups", "service", "auth", "keys", "audit",
        "cluster",
    }  # fmt: skip
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(sorted(unknown))}")
    store = doc.get("store", {})
    if not isinstance(store, dict):
        raise ConfigError(f"{path}: [store] must be a table")
    for own in ("name", "location"):
        if own in store:
            raise ConfigError(f"{path} [store]: {own} belongs to a camera ([cameras.ID])")
    defaults = _settings(CameraSettings(), store, f"{path} [store]")
    cameras: dict[str, CameraSettings] = {}
    cams = doc.get("cameras", {})
    if not isinstance(cams, dict):
        raise ConfigError(f"{path}: [cameras] must be a table of tables")

    for cam_id, table in cams.items():
        validate_camera_id(cam_id)
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [cameras.{cam_id}] must be a table")
        cameras[cam_id] = _settings(defaults, table, f"{path} [cameras.{cam_id}]")
    shared = _groups(doc.get("groups", {}), str(path))
    notes: list[str] = []
    retention = _retention(doc.get("retention", {}), str(path), shared, notes)
    cluster = _cluster(doc.get("cluster"), str(path))
    delay = cluster.deletion_delay_s
    if cluster.etcd and delay is not None and delay * 1e9 < (retention.every_ns or 0):
        notes.append(
            f"[cluster] deletion_delay_s = {delay:g} is shorter than [retention] every: another "
            "node's index may still name footage the deleter has deleted (its reads of it fail "
            "until its next retention run); twice `every` (the default) leaves every node time"
        )
    unknown = sorted(c for c in cluster.pins if c not in cameras)
    if unknown:
        notes.append(
            f"[cluster] pins name camera(s) not in [cameras]: {', '.join(unknown)} (a typo? "
            "a pin of a camera no node records pins nothing)"
        )
    return StoreConfig(
        defaults=defaults,
        cameras=cameras,
        retention=retention,
        tier=_tier(doc.get("tier", {}), str(path), shared, notes),
        groups=shared,
        service=_service(doc.get("service", {}), str(path)),
        notes=tuple(notes),
        auth=_auth(doc.get("auth", {}), str(path)),
        keys_dir=_keys(doc.get("keys", {}), str(path)),
        audit_max_age_ns=_audit(doc.get("audit", {}), str(path)),
        cluster=cluster,
    )


def _audit(doc: Any, where: str) -> int | None:
    if not isinstance(doc, dict) or set(doc) - {"max_age"}:
        raise ConfigError(f"{where}: [audit] holds only max_age (how long records are kept)")
    if "max_age" not in doc:
        return None
    try:
        ns = parse_age_ns(doc["max_age"], "[audit] max_age")
    except UsageError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    if ns < 86400 * 10**9:
        raise ConfigError(f"{where} [audit]: max_age must be at least a day")
    return ns


def _keys(doc: Any, where: str) -> str | None:
    if not isinstance(doc, dict) or set(doc) - {"dir"}:
        raise ConfigError(f"{where}: [keys] holds only dir (where the signing keys are)")
    d = doc.get("dir")
    if d is not None and (not isinstance(d, str) or not d.startswith("/")):
        raise ConfigError(f"{where} [keys]: dir must be an absolute path")
    return d


def _section(doc: Any, where: str, name: str, keys: tuple[str, ...]) -> str:
    """Check that [name] is a table of only ``keys``; where to name it in errors."""
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: [{name}] must be a table")
    where = f"{where} [{name}]"
    extra = set(doc) - set(keys)
    if extra:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(extra))}")
    return where


def etcd_endpoint(url: str) -> tuple[str, int]:
    """(host, port) of an etcd client URL, ``http://HOST:PORT`` (the port defaults to 2379)."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    try:
        port = parts.port or 2379
    except ValueError:  # (a port that is no number, or out of range)
        port = 0
    if parts.scheme != "http" or not parts.hostname or not port:
        raise UsageError(f"etcd endpoint {url!r}: give http://HOST:PORT")
    return parts.hostname, port


def _cluster(doc: Any, where: str) -> ClusterConfig:
    if doc is None:  # (no [cluster] section: a node of its own)
        return ClusterConfig()
    where = _section(doc, where, "cluster", ClusterConfig._fields)
    etcd = doc.get("etcd", [])
    if isinstance(etcd, str):
        etcd = [etcd]
    if not isinstance(etcd, list) or not all(isinstance(u, str) and u for u in etcd):
        raise ConfigError(f'{where}: etcd is a list of client URLs ["http://HOST:2379", ...]')
    for url in etcd:
        try:
            etcd_endpoint(url)
        except UsageError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    name = doc.get("name", "")
    if not isinstance(name, str) or (name and not re.fullmatch(r"[A-Za-z0-9][\w.-]{0,63}", name)):
        raise ConfigError(f"{where}: name is letters, digits, . _ - (at most 64)")
    if "name" in doc and not name:
        raise ConfigError(f"{where}: name is empty: give this node's name, or leave the key out "
                          "for the host's name")  # fmt: skip
    prefix = doc.get("prefix", ClusterConfig().prefix)
    if not valid_cluster_prefix(prefix):
        raise ConfigError(f'{where}: prefix is an etcd key path such as "/vstore/city"')
    ttl = doc.get("lease_ttl_s", ClusterConfig().lease_ttl_s)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 3 <= ttl <= 300:
        raise ConfigError(f"{where}: lease_ttl_s must be a whole number within 3..300")
    weight = doc.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 < weight <= 1000:
        raise ConfigError(f"{where}: weight must be a number within (0, 1000]")
    pins = doc.get("pins", {})
    if not isinstance(pins, dict) or not all(isinstance(v, str) for v in pins.values()):
        raise ConfigError(f'{where}: pins is a table camera = "member"')
    delay = doc.get("deletion_delay_s")
    if delay is not None and (
        isinstance(delay, bool)
        or not isinstance(delay, int | float)
        or not 0 <= delay <= 30 * 86400
    ):
        raise ConfigError(f"{where}: deletion_delay_s must be seconds within 0..2592000 (30 days)")
    if not etcd:
        # Without it the node would join no cluster and record every camera on its own,
        # beside the members that record them.
        raise ConfigError(
            f'{where}: needs etcd = ["http://HOST:2379", ...] (the cluster\'s etcd '
            "members); to run this node on its own, remove the [cluster] section"
        )
    if "prefix" not in doc:
        # A node that left it out would make a cluster of its own on the same etcd, and
        # record every camera beside the city's nodes.
        raise ConfigError(
            f'{where}: needs prefix = "/vstore/CITY", the cluster\'s keys in etcd, the same '
            'on every node of the cluster (nodes that ran without it used "/vstore/default")'
        )
    return ClusterConfig(
        tuple(etcd), name, prefix, ttl, float(weight), dict(pins),
        None if delay is None else float(delay),
    )  # fmt: skip


def _auth(doc: Any, where: str) -> dict[str, Any]:
    if not isinstance(doc, dict) or set(doc) - {"jwt"}:
        raise ConfigError(f"{where}: [auth] holds only [auth.jwt]")
    return doc


def _groups(doc: Any, where: str) -> dict[str, tuple[str, ...]]:
    if not isinstance(doc, dict) or not all(isinstance(t, dict) for t in doc.values()):
        raise ConfigError(f"{where}: [groups] must be a table of [groups.NAME] tables")
    out: dict[str, tuple[str, ...]] = {}
    for name, table in doc.items():
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
            raise ConfigError(f"{where}: [groups.{name}]: a group name is letters, digits, . _ -")
        extra = set(table) - {"cameras"}
        if extra:
            raise ConfigError(
                f"{where}: [groups.{name}]: unknown key(s) {', '.join(sorted(extra))}"
            )
        try:
            out[name] = _group_members(table, f"{where} [groups.{name}]")
        except UsageError as exc:  # (a camera id: "*" is for tokens, not a group's list)
            raise ConfigError(f"{where} [groups.{name}]: {exc}") from exc
    return out


def _service(doc: Any, where: str) -> ServiceConfig:
    where = _section(doc, where, "service", ServiceConfig._fields)
    d = ServiceConfig()
    out = d._replace(**doc)
    for key in ("max_clip_s", "rate_per_s", "write_timeout_s", "chain_sign_every_s",
                "keep_exports_s"):  # fmt: skip
        v = getattr(out, key)
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v < float("inf"):
            raise ConfigError(f"{where}: {key} must be a number above 0")
    if isinstance(out.max_exports, bool) or not isinstance(out.max_exports, int):
        raise ConfigError(f"{where}: max_exports must be a whole number")
    if out.max_exports < 1:
        raise ConfigError(f"{where}: max_exports must be at least 1")
    if not isinstance(out.require_purpose, bool):
        raise ConfigError(f"{where}: require_purpose must be true or false")
    for key in ("tls_cert", "tls_key"):
        v = getattr(out, key)
        if v is not None and not isinstance(v, str):
            raise ConfigError(f"{where}: {key} must be a file path")
    if (out.tls_cert is None) != (out.tls_key is None):
        raise ConfigError(f"{where}: give both tls_cert and tls_key, or neither")
    if out.url is not None and (
        not isinstance(out.url, str) or not out.url.startswith(("http://", "https://"))
    ):
        raise ConfigError(f"{where}: url must be http(s)://HOST:PORT, as other machines reach it")
    recorders = out.recorders
    if recorders == "auto":
        recorders = len(cpus.one_per_core())
    if not isinstance(out.pin_recorders, bool):
        raise ConfigError(f"{where}: pin_recorders must be true or false")
    if isinstance(recorders, bool) or not isinstance(recorders, int) or not 1 <= recorders <= 256:
        raise ConfigError(f'{where}: recorders must be a whole number within 1..256, or "auto"')
    return out._replace(
        recorders=recorders,
        max_clip_s=float(out.max_clip_s),
        rate_per_s=float(out.rate_per_s),
        write_timeout_s=float(out.write_timeout_s),
        chain_sign_every_s=float(out.chain_sign_every_s),
        keep_exports_s=float(out.keep_exports_s),
    )


def _tier(
    doc: Any,
    where: str,
    shared: dict[str, tuple[str, ...]] | None = None,
    notes: list[str] | None = None,
) -> TierConfig:
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: [tier] must be a table")
    top = {k: v for k, v in doc.items() if not isinstance(v, dict)}
    known = {"url", "older_than", "parallel", "max_rate", "cache", "legal_hold", "every"}
    unknown = set(top) - known
    if unknown:
        raise ConfigError(f"{where} [tier]: unknown setting(s) {', '.join(sorted(unknown))}")
    url = doc.get("url")
    if url is not None and not isinstance(url, str):
        raise ConfigError(f"{where} [tier]: url must be a string")

    def age(table: dict[str, Any], sect: str, default: int) -> int:
        extra = set(table) - {"older_than", "cameras"}
        if extra:
            raise ConfigError(f"{where} [{sect}]: unknown setting(s) {', '.join(sorted(extra))}")
        if "older_than" not in table:
            return default
        try:
            return parse_age_ns(table["older_than"], "older_than")
        except UsageError as exc:
            raise ConfigError(f"{where} [{sect}]: {exc}") from exc

    older = age({"older_than": doc.get("older_than", "7d")}, "tier", 0)
    groups: dict[str, tuple[tuple[str, ...], int]] = {}
    for name, table in (doc.get("groups") or {}).items():
        sect = f"{where} [tier.groups.{name}]"
        groups[name] = (
            _policy_group(name, table, sect, shared or {}, notes if notes is not None else []),
            age(table, f"tier.groups.{name}", older),
        )
    cameras: dict[str, int] = {}
    for cam, table in (doc.get("cameras") or {}).items():
        validate_camera_id(cam)
        cameras[cam] = age(table, f"tier.cameras.{cam}", older)
    parallel = doc.get("parallel", 2)
    if not isinstance(parallel, int) or isinstance(parallel, bool) or not 1 <= parallel <= 64:
        raise ConfigError(f"{where} [tier]: parallel must be an integer within 1..64")
    legal_hold = doc.get("legal_hold", True)
    if not isinstance(legal_hold, bool):
        raise ConfigError(f"{where} [tier]: legal_hold must be true or false")
    try:
        raw_rate = doc.get("max_rate", AUTO_RATE)
        if isinstance(raw_rate, int) and not isinstance(raw_rate, bool):
            raw_rate = str(raw_rate)  # a bare number needs its unit, as in text
        rate = parse_rate(raw_rate)
    except (UsageError, ConfigError) as exc:
        raise ConfigError(f"{where} [tier]: max_rate: {exc}") from exc
    try:
        cache = _config_size(doc.get("cache", "1GiB"))
    except (UsageError, ConfigError) as exc:
        raise ConfigError(f"{where} [tier]: {exc}") from exc
    every = _every(doc.get("every", "1h"), f"{where} [tier]")
    return TierConfig(url, older, groups, cameras, parallel, rate, cache, legal_hold, every)

"""Every local path, object key and index key of a store is built here and nowhere else.

Store directory::

    STORE/vstore.toml          configuration (optional)
    STORE/meta.json            store identity (uuid, format versions)
    STORE/index/               RocksDB time index (docs/design/schema.md)
    STORE/segments/CAM/YYYY/MM/DD/SSSSSSSSSSSSSSSSSSS-IIIIIIII.vseg
    STORE/tmp/                 scratch space (clip staging); safe to empty
    STORE/leases/HOST-PID-N.json  footage a reader holds (deletion waits for it; vstore.store.lease)
    STORE/cache/TIER/          read cache of tiered footage (disposable; evicted first)
    STORE/quarantine/segments/...  files none of whose chunks verify, kept whole (R5)
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from vstore._native import keycodec
from vstore.base.errors import UsageError

CAMERA_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SEGMENT_SUFFIX = ".vseg"
# A tiered object's name may end with its store's short id (-SSSSSSSS) before the suffix.
_SEGMENT_NAME_RE = re.compile(r"^(-?\d+)-([0-9a-f]{16})(?:-[0-9a-f]{8})?\.vseg$")

# Index key prefixes (docs/design/schema.md). Single bytes keep keys short and ordered.
META_PREFIX = b"\x00"
CAMERA_PREFIX = b"C"  # C + camera id utf-8            -> camera row (JSON)
CAMERA_NUM_PREFIX = b"N"  # N + u32                    -> camera id utf-8
SEGMENT_PREFIX = b"S"  # S + u32 cam + i64 start + u64 -> segment row (JSON)
CHUNK_PREFIX = b"K"  # K + u32 cam + i64 start_ns      -> chunk row (packed)
EVENT_PREFIX = b"D"  # D + u32 cam + i64 at_ns + u32   -> discontinuity / gap event (JSON)
OPEN_PREFIX = b"O"  # O + u64 segment id               -> segment being written (JSON)
GARBAGE_PREFIX = b"G"  # G + u64 segment id            -> segment being deleted (JSON)
HOLD_PREFIX = b"H"  # H + u64 hold id                  -> legal hold (JSON), kept forever
AUDIT_PREFIX = b"A"  # A + u64 sequence                -> audit record (JSON), kept forever
AUDIT_DIGEST_PREFIX = b"B"  # B + u64 digest sequence -> signed digest of audit records (JSON)
CHAIN_HEAD_PREFIX = b"R"  # R + u32 cam                 -> the camera's signed chain head (JSON)
IMPORT_PREFIX = b"I"  # I + u32 cam + i64 start         -> unfinished import (JSON)
#                       ... + u64 segment id          -> a segment it wrote (empty)
CATALOG_PENDING_PREFIX = b"P"  # P + u32 cam + i64 hour  -> tier URL whose catalog hour is behind
# V + u32 cam + object key utf-8 -> another store's segment this index dropped when the
# cluster's deleter took it (JSON: its store): taken back if the deleter puts it back.
VIEW_DROPPED_PREFIX = b"V"

SCHEMA_VERSION_KEY = META_PREFIX + b"schema_version"
NEXT_SEGMENT_ID_KEY = META_PREFIX + b"next_segment_id"
NEXT_CAMERA_NUM_KEY = META_PREFIX + b"next_camera_num"
NEXT_HOLD_ID_KEY = META_PREFIX + b"next_hold_id"
NEXT_AUDIT_SEQ_KEY = META_PREFIX + b"next_audit_seq"
# The next audit digest's number, written with each digest: the newest digest removed
# leaves its number given.
NEXT_AUDIT_DIGEST_KEY = META_PREFIX + b"next_audit_digest"
CLOCK_MARK_KEY = META_PREFIX + b"clock_mark"  # the wall and boot clocks last seen (JSON)
# The store's uuid, kept beside meta.json so a lost meta.json is restored, never re-invented.
STORE_UUID_KEY = META_PREFIX + b"store_uuid"
# The SHA-256 of the vstore.toml a node last ran with: a change is audited when noticed.
CONFIG_SHA256_KEY = META_PREFIX + b"config_sha256"


def last_claim_key(camera_id: str) -> bytes:
    """This store's member's last claim on a camera (JSON {epoch, since_ns}): the epoch its
    footage is written to the shared catalog under after the camera moved on."""
    return META_PREFIX + b"last_claim/" + camera_id.encode()


def validate_camera_id(camera_id: str) -> str:
    if not isinstance(camera_id, str) or not CAMERA_ID_RE.match(camera_id):
        raise UsageError(
            f"bad camera id {camera_id!r}: 1-64 of letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    if camera_id.endswith(SEGMENT_SUFFIX):  # its directory would pass for a segment file
        raise UsageError(f"bad camera id {camera_id!r}: it may not end in {SEGMENT_SUFFIX}")
    return camera_id


# Files of a RocksDB directory a read-only view leaves out: the lock and info logs belong to
# the writer, the binding's config file is rewritten by every open (into the view instead).
INDEX_VIEW_SKIP = ("LOCK", "LOG", "rocksdict-config.json")


def index_view_dir(scratch: Path, pid: int, token: str) -> Path:
    """A private directory of links to an index's files, outside the store, that a read-only
    open goes through (vstore.index.time_index)."""
    return scratch / f"vstore-index-view-{pid}-{token}"


def keyring_path(keys_dir: Path) -> Path:
    """The list of a key directory's keys, current and retired, with their public halves."""
    return keys_dir / "keyring.json"


PRIVATE_KEY_SUFFIX = ".key.pem"


def private_key_path(keys_dir: Path, key_id: str) -> Path:
    return keys_dir / f"{key_id}{PRIVATE_KEY_SUFFIX}"


def private_key_paths(keys_dir: Path) -> list[Path]:
    """Every private key file in a key directory."""
    return sorted(keys_dir.glob(f"*{PRIVATE_KEY_SUFFIX}"))


def staging_path(path: Path) -> Path:
    """The name a file is written under before it is renamed over ``path``."""
    return path.with_name(path.name + ".tmp")


class StoreLayout:
    """Paths inside one store directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def config_path(self) -> Path:
        return self.root / "vstore.toml"

    @property
    def meta_path(self) -> Path:
        return self.root / "meta.json"

    @property
    def index_dir(self) -> Path:
        return self.root / "index"

    @property
    def segments_dir(self) -> Path:
        return self.root / "segments"

    @property
    def tmp_dir(self) -> Path:
        return self.root / "tmp"

    @property
    def leases_dir(self) -> Path:
        return self.root / "leases"

    @property
    def auth_dir(self) -> Path:
        """What ``vstore serve`` authenticates with: API tokens, stored hashed (mode 0700)."""
        return self.root / "auth"

    @property
    def tokens_path(self) -> Path:
        return self.auth_dir / "tokens.json"

    @property
    def exports_dir(self) -> Path:
        """Evidence packages the node made for its API's clients (``{id}.zip``), each with
        ``{id}.json``: who asked, for which cameras."""
        return self.root / "exports"

    def export_path(self, export_id: str) -> Path:
        return self.exports_dir / f"{export_id}.zip"

    def export_record_path(self, export_id: str) -> Path:
        return self.exports_dir / f"{export_id}.json"

    @property
    def keys_dir(self) -> Path:
        """The node's signing keys (mode 0700) unless ``[keys] dir`` names another place."""
        return self.root / "keys"

    @property
    def socket_path(self) -> Path:
        """The serving process's Unix socket, for clients on this host."""
        return self.root / "vstore.sock"

    @property
    def quarantine_dir(self) -> Path:
        """Segment files none of whose chunks verify, kept whole out of the index (R5)."""
        return self.root / "quarantine"

    def quarantine_path(self, relpath: str) -> Path:
        return self.quarantine_dir / relpath

    @property
    def cache_dir(self) -> Path:
        """The tier read caches, one folder per tier (disposable copies of tiered bytes)."""
        return self.root / "cache"

    def tier_cache_dir(self, tier_url: str) -> Path:
        """Where ranged reads of one tier are cached (disposable; one folder per tier)."""
        import hashlib  # (on use: most commands never name a tier)

        return self.cache_dir / hashlib.sha256(tier_url.encode()).hexdigest()[:16]

    def lease_path(self, host: str, pid: int, serial: int) -> Path:
        """A read lease's file (vstore.store.lease); the ``.tmp`` beside it is its staging name."""
        return self.leases_dir / f"{host}-{pid}-{serial}.json"

    def segment_relpath(self, camera_id: str, start_ns: int, segment_id: int) -> str:
        """Relative path of a segment file: camera / UTC date / start-id.vseg."""
        day = datetime.fromtimestamp(start_ns // 10**9, tz=UTC)
        return (
            f"segments/{camera_id}/{day:%Y/%m/%d}/{start_ns:019d}-{segment_id:016x}{SEGMENT_SUFFIX}"
        )

    def path(self, relpath: str) -> Path:
        return self.root / relpath

    def iter_segment_files(self):
        """Every *.vseg file under segments/, as relative POSIX paths."""
        if not self.segments_dir.exists():
            return
        for p in sorted(self.segments_dir.rglob("*" + SEGMENT_SUFFIX)):
            yield p.relative_to(self.root).as_posix()


def parse_segment_name(name: str) -> tuple[int, int] | None:
    """(start_ns, segment_id) from a segment file name, or None if it is not one."""
    m = _SEGMENT_NAME_RE.match(name)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2), 16)


def object_key(
    prefix: str, camera_id: str, start_ns: int, segment_id: int, store_uuid: str = ""
) -> str:
    """Object-store key of a tiered segment: PREFIX/CAM/YYYY-MM-DD/start-id-store.vseg. The
    store's short id keeps stores that share a bucket apart: segment ids count per store, so
    two stores' segments of one camera could otherwise meet at one key, one overwriting the
    other's footage."""
    day = datetime.fromtimestamp(start_ns // 10**9, tz=UTC)
    head = prefix.strip("/")
    own = f"-{store_uuid.replace('-', '')[:8]}" if store_uuid else ""
    name = f"{camera_id}/{day:%Y-%m-%d}/{start_ns:019d}-{segment_id:016x}{own}{SEGMENT_SUFFIX}"
    return f"{head}/{name}" if head else name


# Copies of the audit digests in the object store. Camera ids start with a letter or digit,
# so this prefix never meets a camera's segments.
AUDIT_OBJECT_PREFIX = "_audit"


def audit_digest_object_prefix(store_uuid: str) -> str:
    return f"{AUDIT_OBJECT_PREFIX}/{store_uuid}/"


def audit_digest_object_key(store_uuid: str, seq: int) -> str:
    """Object-store key of the copy of audit digest ``seq`` (under the tier's own prefix)."""
    return f"{audit_digest_object_prefix(store_uuid)}digest-{seq:012d}.json"


def parse_audit_digest_object_key(key: str) -> int | None:
    name = key.rsplit("/", 1)[-1]
    if not (name.startswith("digest-") and name.endswith(".json")):
        return None
    try:
        return int(name[len("digest-") : -len(".json")])
    except ValueError:
        return None


# Holds every store of a bucket honours (vstore/store/shared_holds.py): STORE#ID's record.
SHARED_HOLDS_PREFIX = "_holds"


def shared_hold_key(store_uuid: str, hold_id: int) -> str:
    return f"{SHARED_HOLDS_PREFIX}/{store_uuid}/{hold_id:012d}.json"


# Where each node of a bucket serves its API (vstore/lifecycle/hot_footage.py): a bucket
# reader asks those nodes for the footage they have not tiered yet.
NODE_CARD_PREFIX = "_nodes"


def node_card_key(store_uuid: str) -> str:
    return f"{NODE_CARD_PREFIX}/{store_uuid}.json"


# Nodes declared gone for good (lifecycle/gone_nodes.py): beside the cards, never among them.
NODE_GONE_PREFIX = "_nodes_gone"


def node_gone_key(store_uuid: str) -> str:
    return f"{NODE_GONE_PREFIX}/{store_uuid}.json"


# The cameras each node records now, and since when (lifecycle/gone_nodes.py): read only for
# a node declared gone, so beside the cards, never among them.
NODE_CAMERAS_PREFIX = "_nodes_cameras"


def node_cameras_key(store_uuid: str) -> str:
    return f"{NODE_CAMERAS_PREFIX}/{store_uuid}.json"


def node_segment_path(start_ns: int, segment_id: int) -> str:
    """A node's local segment as its API names it (under the camera's segments URL)."""
    return f"{start_ns}.{segment_id}"


def parse_node_segment_path(text: str) -> tuple[int, int] | None:
    """(start_ns, segment_id) of ``node_segment_path``'s name, or None."""
    start, sep, seg = text.partition(".")
    if not sep or not (start + seg).isascii() or not start.isdigit() or not seg.isdigit():
        return None
    if f"{int(start)}.{int(seg)}" != text or int(start) >= 2**63 or int(seg) >= 2**64:
        return None  # (one spelling per segment: no leading zeros, nothing out of range)
    return int(start), int(seg)


# The shared catalog in the object store: one object per camera and hour of footage, listing
# the segments tiered there (vstore/lifecycle/shared_catalog.py). "_" never starts a camera.
CATALOG_OBJECT_PREFIX = "_catalog"
HOUR_NS = 3600 * 10**9


def catalog_hour_ns(t_ns: int) -> int:
    """The start of the catalog hour (UTC) that holds a segment starting at t_ns."""
    return t_ns // HOUR_NS * HOUR_NS


def catalog_camera_prefix(camera_id: str) -> str:
    return f"{CATALOG_OBJECT_PREFIX}/{camera_id}/"


def catalog_object_key(camera_id: str, hour_ns: int) -> str:
    """Object-store key of a camera's catalog hour: _catalog/CAM/YYYY-MM-DD/HH.json."""
    t = datetime.fromtimestamp(hour_ns // 10**9, tz=UTC)
    return f"{catalog_camera_prefix(camera_id)}{t:%Y-%m-%d}/{t:%H}.json"


def catalog_summary_key(camera_id: str) -> str:
    """A camera's catalog summary (each hour's segment count, bytes and extent), what a
    bucket's listing of cameras reads instead of every hour: _catalog/CAM/summary.json."""
    return f"{catalog_camera_prefix(camera_id)}summary.json"


def parse_catalog_object_key(key: str) -> tuple[str, int] | None:
    """(camera, hour_ns) of a catalog object's key, or None."""
    parts = key.split("/")
    if len(parts) != 4 or parts[0] != CATALOG_OBJECT_PREFIX or not parts[3].endswith(".json"):
        return None
    try:
        t = datetime.strptime(f"{parts[2]} {parts[3][:-5]}", "%Y-%m-%d %H").replace(tzinfo=UTC)
    except ValueError:
        return None
    return parts[1], int(t.timestamp()) * 10**9


# A cluster's keys in etcd (docs/design/cluster.md), under its [cluster] prefix.
def cluster_members_prefix(prefix: str) -> str:
    return f"{prefix}/members/"


def cluster_member_key(prefix: str, member: str) -> str:
    """A live member's key, bound to its lease: JSON of what it is (node, API, weight)."""
    return f"{cluster_members_prefix(prefix)}{member}"


def cluster_drains_prefix(prefix: str) -> str:
    return f"{prefix}/drain/"


def cluster_drain_key(prefix: str, member: str) -> str:
    """Present while a member is to hand over its cameras and stop (`vstore node drain`)."""
    return f"{cluster_drains_prefix(prefix)}{member}"


def cluster_owners_prefix(prefix: str) -> str:
    return f"{prefix}/owners/"


def cluster_owner_key(prefix: str, camera_id: str) -> str:
    """A camera's claim, bound to its owner's lease; its create revision is the epoch."""
    return f"{cluster_owners_prefix(prefix)}{camera_id}"


def cluster_leader_key(prefix: str, role: str) -> str:
    """The key the member elected to ``role`` holds, bound to its lease; its create revision
    is that leadership's epoch (``retention``: the cluster's one deleter of tiered footage;
    ``assigner``: the one that plans who records which camera)."""
    return f"{prefix}/leader/{role}"


def cluster_plan_key(prefix: str) -> str:
    """The assigner's plan: who should record which camera, balanced by bitrate."""
    return f"{prefix}/plan"


def cluster_loads_prefix(prefix: str) -> str:
    return f"{prefix}/load/"


def cluster_load_key(prefix: str, member: str) -> str:
    """A member's measured bitrate of each camera it records, bound to its lease."""
    return f"{cluster_loads_prefix(prefix)}{member}"


def cluster_rebalance_key(prefix: str) -> str:
    """Present while an operator asks the assigner to even the members' loads out now."""
    return f"{prefix}/rebalance"


def catalog_pending_key(camera_num: int, hour_ns: int) -> bytes:
    return keycodec.encode_key(CATALOG_PENDING_PREFIX, camera_num, hour_ns)


def view_dropped_key(camera_num: int, object_key: str) -> bytes:
    return camera_prefix(VIEW_DROPPED_PREFIX, camera_num) + object_key.encode()


def chunk_key(camera_num: int, start_ns: int) -> bytes:
    return keycodec.encode_key(CHUNK_PREFIX, camera_num, start_ns)


def segment_key(camera_num: int, start_ns: int, segment_id: int) -> bytes:
    return keycodec.encode_key(SEGMENT_PREFIX, camera_num, start_ns) + segment_id.to_bytes(8, "big")


def event_key(camera_num: int, at_ns: int, seq: int) -> bytes:
    return keycodec.encode_key(EVENT_PREFIX, camera_num, at_ns) + seq.to_bytes(4, "big")


def camera_prefix(prefix: bytes, camera_num: int) -> bytes:
    """The 5-byte key prefix of one camera's rows of one kind."""
    return prefix + camera_num.to_bytes(4, "big")


def decode_time_key(key: bytes) -> tuple[int, int]:
    """(camera_num, t_ns) of a chunk/segment/event key."""
    _, cam, t = keycodec.decode_key(key)
    return cam, t


def open_key(segment_id: int) -> bytes:
    return OPEN_PREFIX + segment_id.to_bytes(8, "big")


def garbage_key(segment_id: int) -> bytes:
    return GARBAGE_PREFIX + segment_id.to_bytes(8, "big")


def hold_key(hold_id: int) -> bytes:
    return HOLD_PREFIX + hold_id.to_bytes(8, "big")


def audit_key(seq: int) -> bytes:
    return AUDIT_PREFIX + seq.to_bytes(8, "big")


def audit_digest_key(seq: int) -> bytes:
    return AUDIT_DIGEST_PREFIX + seq.to_bytes(8, "big")


# A local directory tier keeps an object's metadata beside it, in a file of this suffix.
OBJECT_METADATA_SUFFIX = ".meta.json"


def object_metadata_path(object_path: Path) -> Path:
    return object_path.with_name(object_path.name + OBJECT_METADATA_SUFFIX)


def chain_head_key(camera_num: int) -> bytes:
    return CHAIN_HEAD_PREFIX + camera_num.to_bytes(4, "big")


def import_key(camera_num: int, start_ns: int) -> bytes:
    """The marker of an import into a camera at a start, kept until it reports done."""
    return keycodec.encode_key(IMPORT_PREFIX, camera_num, start_ns)


def import_segment_key(camera_num: int, start_ns: int, segment_id: int) -> bytes:
    """A segment the import at (camera, start) wrote: under its marker's key."""
    return import_key(camera_num, start_ns) + segment_id.to_bytes(8, "big")


def camera_key(camera_id: str) -> bytes:
    return CAMERA_PREFIX + camera_id.encode()


def camera_num_key(camera_num: int) -> bytes:
    return CAMERA_NUM_PREFIX + camera_num.to_bytes(4, "big")

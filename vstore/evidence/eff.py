"""The ONVIF Export File Format (EFF) signature inside an MP4: a file-level ``meta`` box
appended after the clip's last box, holding ``hdlr``, ``suep`` (who exported what, from which
sources) and ``ipro/sinf`` with scheme ``oeff``: ``schm``, and ``schi`` with the RSASSA-PSS
signature (``sibo``), the signer's DER certificate (``cert``), the capture start (``cstb``)
and a free-text note (``auib``).

What is signed (EFF 5.6.1, Annex A): every byte of the file, in order, with the signature's
own bytes in ``sibo`` set to zero; box sizes are final before signing. RSASSA-PSS with
SHA-256, MGF1-SHA-256 and a 20-byte salt (5.6.2). Appending ``meta`` last leaves the clip's
``moov`` and ``mdat`` (and so its chunk offsets) untouched, and is where the spec's box tree
(Annex B) and ONVIF's reference verifier expect it.

Choices the specification leaves open, made here (docs/design/evidence.md): the ``hdlr``
handler type is ``oeff``; ``cstb`` sits in ``schi``; 32-bit box sizes throughout.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from typing import IO, Any, NamedTuple

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from vstore.evidence.package_format import sha256_stream
from vstore.store.keys import Signer, key_id_of

SCHEME = b"oeff"
SCHEME_VERSION = 0x00010000
SALT_BYTES = 20
_EPOCH_1904_S = 2_082_844_800  # seconds from 1904-01-01 to 1970-01-01 (MP4 times)
_EPOCH_1601_100NS = 116_444_736_000_000_000  # 100 ns units from 1601-01-01 to 1970-01-01
_BLOCK = 1 << 20


def _box(kind: bytes, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return struct.pack(">I", 8 + len(body)) + kind + body


def _full(kind: bytes, version: int, flags: int, *parts: bytes) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags), *parts)


def _cstr(s: str) -> bytes:
    return s.encode("utf-8").replace(b"\x00", b"") + b"\x00"


def pss() -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=SALT_BYTES)


class SourceTrack(NamedTuple):
    track_id: int
    name: str  # the camera (or microphone) name
    url: str  # where it is reached, without credentials


class ExportInfo(NamedTuple):
    """What ``suep`` and ``auib`` say."""

    unit_name: str  # the exporting node
    unit_url: str
    export_unix_s: int
    operator: str  # the person exporting
    tracks: list[SourceTrack]
    capture_start_ns: int  # wall-clock time of the clip's first sample shown (``cstb``)
    note: str  # case and purpose


def meta_box(info: ExportInfo, cert_der: bytes, signature_bytes: int) -> tuple[bytes, int]:
    """The ``meta`` box with a zeroed signature of ``signature_bytes``, and the offset of the
    signature within it."""
    hdlr = _full(b"hdlr", 0, 0, bytes(4), b"oeff", bytes(12), _cstr("ONVIF export signature"))
    entries = b"".join(
        struct.pack(">H", t.track_id) + _cstr(t.name) + _cstr(t.url) + _cstr("") + _cstr("")
        for t in info.tracks
    )
    suep = _full(
        b"suep", 1, 0,
        _cstr(info.unit_name), _cstr(info.unit_url), _cstr(""),
        struct.pack(">Q", info.export_unix_s + _EPOCH_1904_S),
        _cstr(info.operator),
        struct.pack(">I", len(info.tracks)), entries,
    )  # fmt: skip
    filetime = _EPOCH_1601_100NS + info.capture_start_ns // 100
    cstb = _box(
        b"cstb", struct.pack(">I", 1), struct.pack(">IQ", info.tracks[0].track_id, filetime)
    )
    sibo = _box(b"sibo", bytes(signature_bytes))
    schi = _box(b"schi", sibo, _box(b"cert", cert_der), cstb, _box(b"auib", _cstr(info.note)))
    schm = _full(b"schm", 0, 0, SCHEME, struct.pack(">I", SCHEME_VERSION))
    sinf = _box(b"sinf", schm, schi)
    ipro = _full(b"ipro", 0, 0, struct.pack(">H", 1), sinf)
    meta = _full(b"meta", 0, 0, hdlr, suep, ipro)
    # meta header 12, hdlr, suep, ipro header 12 + count 2, sinf header 8, schm, schi header 8,
    # sibo header 8.
    at = 12 + len(hdlr) + len(suep) + 14 + 8 + len(schm) + 8 + 8
    assert meta[at - 4 : at] == b"sibo"
    return meta, at


def track_ids(f: IO[bytes]) -> list[int]:
    """The track ids of an MP4's ``moov`` (from each ``trak/tkhd``)."""
    moov = next((b for b in _boxes(f, 0, _size(f)) if b[0] == b"moov"), None)
    if moov is None:
        return []
    ids = []
    for kind, start, end in _boxes(f, moov[1], moov[2]):
        if kind != b"trak":
            continue
        for k2, s2, _e2 in _boxes(f, start, end):
            if k2 == b"tkhd":
                f.seek(s2)
                version = f.read(1)[0]
                f.seek(s2 + 4 + (16 if version == 1 else 8))
                ids.append(struct.unpack(">I", f.read(4))[0])
    return ids


def sign_appended(
    f: IO[bytes], signer: Signer, info: ExportInfo, hashed: Any = None
) -> tuple[str, str]:
    """Append the ``meta`` signed by ``signer`` (an ``eff`` key) to the MP4 open read-write
    in ``f``. ``hashed`` is the SHA-256 state of the file's bytes when the caller hashed them
    already (as they were written); else they are read once here. Returns (SHA-256 of the
    signed file, SHA-256 of the clip before the signature)."""
    cert = x509.load_pem_x509_certificate(signer.info.cert_pem.encode())
    cert_der = cert.public_bytes(serialization.Encoding.DER)
    if hashed is not None:
        h = hashed
    else:
        f.seek(0)
        h = sha256_stream(f)[0]
    media_sha256 = h.hexdigest()
    meta, at = meta_box(info, cert_der, signer.signature_bytes)
    signed = h.copy()
    signed.update(meta)
    sig = signer.sign_pss_digest(signed.digest(), SALT_BYTES)
    final = meta[:at] + sig + meta[at + len(sig) :]
    f.seek(0, 2)
    f.write(final)
    h.update(final)
    return h.hexdigest(), media_sha256


class Signature(NamedTuple):
    """One signing instance found in a file, checked."""

    valid: bool
    cert_der: bytes
    detail: str
    scheme: bytes
    operator: str
    media_bytes: int  # where the signed clip's own boxes end (the ``meta`` box's offset)


def _size(f: IO[bytes]) -> int:
    f.seek(0, 2)
    return f.tell()


def _boxes(f: IO[bytes], start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, box end) of each box in [start, end)."""
    at = start
    while at + 8 <= end:
        f.seek(at)
        head = f.read(8)
        size, kind = struct.unpack(">I4s", head)
        hdr = 8
        if size == 1:
            size = struct.unpack(">Q", f.read(8))[0]
            hdr = 16
        elif size == 0:
            size = end - at
        if size < hdr or at + size > end:
            raise ValueError(f"box {kind!r} at {at} runs past its container")
        yield kind, at + hdr, at + size
        at += size


def _children(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int, int]]:
    """(type, box start, payload start, box end) of each box of ``data`` in [start, end)."""
    at = start
    while at + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, at)
        if size < 8 or at + size > end:
            raise ValueError(f"box {kind!r} at {at} runs past its container")
        yield kind, at, at + 8, at + size
        at += size


def hash_and_signatures(f: IO[bytes]) -> tuple[str, int, list[Signature]]:
    """One read of the file: its SHA-256, its size, and its EFF signatures checked (see
    ``read_signatures``)."""
    total = _size(f)
    metas = [b for b in _boxes(f, 0, total) if b[0] == b"meta"]
    if metas and metas[-1][2] != total:
        raise ValueError("bytes follow the signature's meta box: they would not be signed")
    meta_off = metas[-1][1] - 8 if metas else total
    f.seek(0)
    prefix = hashlib.sha256()
    left = meta_off
    while left:
        block = f.read(min(_BLOCK, left))
        if not block:
            raise ValueError("the file ended early")
        prefix.update(block)
        left -= len(block)
    meta = f.read()
    whole = prefix.copy()
    whole.update(meta)
    sigs = _signatures(meta, meta_off, prefix) if metas else []
    return whole.hexdigest(), total, sigs


def read_signatures(f: IO[bytes]) -> list[Signature]:
    """Every ``oeff`` signing instance of the file's last top-level ``meta``, each checked
    (Annex A: the later instances removed, the sizes of ``ipro`` and ``meta`` adjusted, the
    signature's bytes zeroed, the rest hashed). Empty when the file has no EFF signature."""
    return hash_and_signatures(f)[2]


def _signatures(meta: bytes, meta_off: int, prefix: Any) -> list[Signature]:
    """The signing instances of ``meta`` (the file's last box, at ``meta_off``), given the
    hash state of every byte before it."""
    out: list[Signature] = []
    ipro = next((c for c in _children(meta, 12, len(meta)) if c[0] == b"ipro"), None)
    if ipro is None:
        return []
    operator = ""
    suep = next((c for c in _children(meta, 12, len(meta)) if c[0] == b"suep"), None)
    if suep is not None:
        operator = _suep_operator(meta[suep[2] + 4 : suep[3]])
    _k, ipro_at, ipro_pay, ipro_end = ipro
    signed_to = 0
    for kind, _sinf_at, sinf_pay, sinf_end in _children(meta, ipro_pay + 6, ipro_end):
        if kind != b"sinf":
            continue
        signed_to = sinf_end
        scheme = b""
        sig = cert = b""
        sig_at = -1
        for k2, _a2, p2, e2 in _children(meta, sinf_pay, sinf_end):
            if k2 == b"schm":
                scheme = meta[p2 + 4 : p2 + 8]
            elif k2 == b"schi":
                for k3, _a3, p3, e3 in _children(meta, p2, e2):
                    if k3 == b"sibo":
                        sig, sig_at = meta[p3:e3], p3
                    elif k3 == b"cert":
                        cert = meta[p3:e3]
        if scheme.lower() != SCHEME or sig_at < 0 or not cert:
            out.append(Signature(False, cert, "not an oeff signature (no schm/sibo/cert)",
                                 scheme, operator, meta_off))  # fmt: skip
            continue
        # This instance's view of meta: up to the end of its sinf, sizes patched, its
        # signature zeroed.
        view = bytearray(meta[:sinf_end])
        view[sig_at : sig_at + len(sig)] = bytes(len(sig))
        struct.pack_into(">I", view, 0, sinf_end)
        struct.pack_into(">I", view, ipro_at, sinf_end - ipro_at)
        h = prefix.copy()
        h.update(view)
        out.append(_check(h.digest(), sig, cert, scheme, operator, meta_off))
    if out and len(meta) > signed_to:
        # Each instance signs meta up to the end of its sinf: boxes put after the last one
        # (a title, a start time, any metadata a player shows) are signed by none.
        out.append(Signature(False, b"", f"{len(meta) - signed_to} byte(s) follow the last "
                             "signature inside its meta box: they are not signed", b"", operator,
                             meta_off))  # fmt: skip
    return out


def _check(
    digest: bytes, sig: bytes, cert_der: bytes, scheme: bytes, operator: str, media: int
) -> Signature:
    try:
        pub: Any = x509.load_der_x509_certificate(cert_der).public_key()
    except ValueError as exc:
        return Signature(False, cert_der, f"the cert box is not a DER certificate ({exc})",
                         scheme, operator, media)  # fmt: skip
    if not isinstance(pub, rsa.RSAPublicKey):
        return Signature(
            False, cert_der, "the certificate's key is not RSA", scheme, operator, media
        )
    try:
        pub.verify(sig, digest, pss(), Prehashed(hashes.SHA256()))
    except InvalidSignature:
        try:  # (the spec says 20; accept another salt length, and say so)
            pub.verify(
                sig, digest,
                padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO),
                Prehashed(hashes.SHA256()),
            )  # fmt: skip
        except InvalidSignature:
            return Signature(False, cert_der, "RSASSA-PSS signature does not verify: the file "
                             "changed after it was signed", scheme, operator, media)  # fmt: skip
        return Signature(True, cert_der, "valid, with a salt length other than EFF's 20",
                         scheme, operator, media)  # fmt: skip
    return Signature(True, cert_der, f"RSASSA-PSS/SHA-256 valid ({pub.key_size}-bit key)",
                     scheme, operator, media)  # fmt: skip


def _suep_operator(payload: bytes) -> str:
    """ExportOperator from a version-1 ``suep`` payload (after version and flags)."""
    parts = payload.split(b"\x00", 3)  # name, url, mac, rest
    if len(parts) < 4 or len(parts[3]) < 8:
        return ""
    return parts[3][8:].split(b"\x00", 1)[0].decode("utf-8", "replace")


def cert_key_id(cert_der: bytes) -> str:
    """The key id (as vstore.store.keys names keys) of a DER certificate's public key."""
    return key_id_of(x509.load_der_x509_certificate(cert_der).public_key())

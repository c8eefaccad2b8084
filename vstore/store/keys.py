"""The node's signing keys: one current key per purpose, generated on first use, readable by
its owner only, rotated with the old public halves kept so that old signatures still verify.

Purposes: ``export`` (Ed25519, signs export manifests), ``recording`` (Ed25519, signs each
camera's segment chain head), ``audit`` (Ed25519, signs audit digests) and ``eff`` (RSA with
a self-signed X.509 certificate: the ONVIF Export File Format signs MP4s with RSASSA-PSS).

A key directory holds ``keyring.json`` (every key's purpose, id, state and public half; the
certificate for ``eff``) and one ``{key_id}.key.pem`` (PKCS#8) per current key. The store's
own ``keys/`` is created when first needed; a directory named by ``[keys] dir`` (another
volume, a secrets manager's mount) must already hold its keys: a missing or unreadable key
there is an error, never a silent unsigned export.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.x509.oid import NameOID

from vstore.base import layout
from vstore.base.errors import ConfigError, UsageError
from vstore.base.fsutil import Fs, write_durably

PURPOSES = ("export", "recording", "audit", "eff")
RSA_BITS = 3072  # EFF asks for 2048 or more; NIST's choice past 2030
CERT_YEARS = 20  # a signature is checked in court years after the export


class KeyInfo(NamedTuple):
    """A key's public record: what ``vstore key list`` shows."""

    purpose: str
    key_id: str  # the first 16 bytes of the SHA-256 of its public key (DER), in hex
    algorithm: str  # "Ed25519" or "RSA-3072"
    created_ns: int
    state: str  # "current" or "retired"
    public_pem: str
    cert_pem: str = ""  # ``eff`` only: the self-signed certificate that goes into each MP4

    def as_json(self) -> dict[str, Any]:
        return self._asdict()


def key_id_of(public_key: Any) -> str:
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()[:32]


def public_pem(public_key: Any) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def load_public_pem(data: bytes, where: str) -> Any:
    """A public key from PEM: a SubjectPublicKeyInfo or the public key of a certificate."""
    blocks = data.count(b"-----BEGIN ")
    if blocks > 1:  # (the libraries would read the first and drop the rest unsaid)
        raise UsageError(
            f"{where} holds {blocks} PEM blocks: give one key (`vstore key public --key-id "
            "ID` prints any key the node ever had)"
        )
    try:
        if b"BEGIN CERTIFICATE" in data:
            return x509.load_pem_x509_certificate(data).public_key()
        return serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise UsageError(f"{where}: not a PEM public key or certificate ({exc})") from None


def verify_ed25519(public_key: Any, signature: bytes, data: bytes) -> bool:
    if not isinstance(public_key, ed25519.Ed25519PublicKey):
        return False
    try:
        public_key.verify(signature, data)
    except InvalidSignature:
        return False
    return True


class Signer:
    """A current key, ready to sign."""

    def __init__(self, info: KeyInfo, private_key: Any) -> None:
        self.info = info
        self._key = private_key

    @property
    def key_id(self) -> str:
        return self.info.key_id

    def sign(self, data: bytes) -> bytes:
        """Ed25519 over ``data`` (``eff`` keys sign with ``sign_pss_digest``)."""
        return self._key.sign(data)

    @property
    def signature_bytes(self) -> int:
        """How long a signature is: 64 for Ed25519, the modulus for RSA."""
        return self._key.key_size // 8 if hasattr(self._key, "key_size") else 64

    def sign_pss_digest(self, digest: bytes, salt_bytes: int) -> bytes:
        """RSASSA-PSS of a SHA-256 ``digest``, MGF1-SHA-256 (an ``eff`` key)."""
        from cryptography.hazmat.primitives.asymmetric import padding
        from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=salt_bytes)
        return self._key.sign(digest, pss, Prehashed(hashes.SHA256()))


class KeyRing:
    """The keys of one key directory."""

    def __init__(
        self,
        directory: Path,
        *,
        create: bool,
        subject: str = "vstore node",
        signed_before: Callable[[], bool] | None = None,
    ) -> None:
        self.dir = Path(directory)
        self.create = create  # generate missing keys (the store's own directory only)
        self.subject = subject
        # Whether what these keys serve was signed before: then an empty directory is a lost
        # one, and new keys would orphan every signature made (nothing is generated).
        self._signed_before = signed_before
        self._fs = Fs()
        self._signers: dict[str, Signer] = {}
        self._signers_lock = threading.Lock()

    @classmethod
    def of_store(cls, store: Any) -> KeyRing:
        """The store's keys: ``[keys] dir`` from its config, or its own ``keys/``."""
        configured = store.config.keys_dir
        subject = f"vstore node {store.uuid}"
        if configured is not None:
            return cls(Path(configured), create=False, subject=subject)
        return cls(
            store.layout.keys_dir,
            create=True,
            subject=subject,
            signed_before=store.index.has_signatures,
        )

    # --- reading -------------------------------------------------------------------------------
    def _read(self) -> list[KeyInfo]:
        path = layout.keyring_path(self.dir)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            if layout.private_key_paths(self.dir):
                # Keys without their ring: making new ones would orphan the old (and every
                # signature they made would stop verifying), so nothing is made or signed.
                raise ConfigError(
                    f"the key ring {path} is missing but {self.dir} holds private keys: "
                    "restore keyring.json from a backup"
                ) from None
            return []
        except OSError as exc:
            raise ConfigError(f"cannot read the key ring {path}: {exc.strerror}") from None
        try:
            return [KeyInfo(**k) for k in json.loads(raw)["keys"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path}: not a key ring vstore wrote ({exc})") from None

    def all_keys(self) -> list[KeyInfo]:
        """Every key, current and retired, oldest first."""
        return self._read()

    def public_keys(self) -> dict[str, KeyInfo]:
        return {k.key_id: k for k in self._read()}

    def ed25519_verifiers(self, purpose: str) -> dict[str, Any]:
        """key id -> a function (signature, data) -> bool, for every key of ``purpose``
        ever made here (current and retired: old signatures still verify)."""
        out: dict[str, Any] = {}
        for k in self._read():
            if k.purpose == purpose:
                pub = load_public_pem(k.public_pem.encode(), f"key {k.key_id}")
                out[k.key_id] = lambda sig, data, pub=pub: verify_ed25519(pub, sig, data)
        return out

    def signer(self, purpose: str) -> Signer:
        """The current key of ``purpose``, generated first when this ring may create keys."""
        _check_purpose(purpose)
        with self._signers_lock:
            s = self._signers.get(purpose)
            if s is None:
                s = self._signers[purpose] = self._make_signer(purpose)
            return s

    def _make_signer(self, purpose: str) -> Signer:
        if not self.create:
            cur = self._current(self._read(), purpose)
            if cur is None:
                raise ConfigError(
                    f"no {purpose} key in {self.dir} ([keys] dir in vstore.toml): create one "
                    f"with `vstore key rotate --purpose {purpose}`, or point dir at the keys"
                )
            return Signer(cur, self._load_private(cur))
        # Read under the ring's lock: a key being made by another thread or process has its
        # private half written before the ring names it, and read in that moment, the ring
        # would look lost (and nothing would be signed).
        with self._locked():
            cur = self._current(self._read(), purpose)
            if cur is None:
                if (
                    not layout.keyring_path(self.dir).exists()
                    and self._signed_before is not None
                    and self._signed_before()
                ):
                    raise ConfigError(
                        f"{self.dir} has no keys, but this store holds signatures made by its "
                        "keys before: restore the key directory from a backup (new keys would "
                        "leave every signature made unverifiable)"
                    )
                cur = self._generate(purpose)
        return Signer(cur, self._load_private(cur))

    @staticmethod
    def _current(keys: list[KeyInfo], purpose: str) -> KeyInfo | None:
        return next((k for k in keys if k.purpose == purpose and k.state == "current"), None)

    def _load_private(self, info: KeyInfo) -> Any:
        path = layout.private_key_path(self.dir, info.key_id)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"the {info.purpose} key {info.key_id} cannot be read from {path}: {exc.strerror}"
            ) from None
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{path}: not an unencrypted PKCS#8 private key ({exc})") from None
        if key_id_of(key.public_key()) != info.key_id:
            raise ConfigError(f"{path} is not the key {info.key_id} the key ring names")
        return key

    # --- changing ------------------------------------------------------------------------------
    def rotate(self, purpose: str) -> KeyInfo:
        """A new current key for ``purpose``; the old one is retired (its public half kept,
        its private half removed)."""
        _check_purpose(purpose)
        with self._signers_lock, self._locked():
            new = self._generate(purpose)
            self._signers.pop(purpose, None)
        return new

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self._fs.makedirs(self.dir)
        os.chmod(self.dir, 0o700)
        fd = os.open(self.dir / "keyring.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _generate(self, purpose: str) -> KeyInfo:
        """Under the lock: the private key is written and fsynced first, then the ring names
        it current (one rename); a crash between leaves an unnamed key file, never a ring
        naming a key that is not there. The retired key's private half goes last."""
        keys = self._read()
        old = self._current(keys, purpose)
        if purpose == "eff":
            key: Any = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
            algorithm = f"RSA-{RSA_BITS}"
        else:
            key = ed25519.Ed25519PrivateKey.generate()
            algorithm = "Ed25519"
        pub = key.public_key()
        kid = key_id_of(pub)
        now_ns = time.time_ns()
        cert = self._certificate(key, kid, now_ns) if purpose == "eff" else ""
        info = KeyInfo(purpose, kid, algorithm, now_ns, "current", public_pem(pub), cert)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path = layout.private_key_path(self.dir, kid)
        write_durably(self._fs, path, layout.staging_path(path), pem, mode=0o600)
        ring = [k._replace(state="retired") if k == old else k for k in keys] + [info]
        doc = json.dumps({"keys": [k.as_json() for k in ring]}, indent=1).encode()
        ring_path = layout.keyring_path(self.dir)
        write_durably(self._fs, ring_path, layout.staging_path(ring_path), doc, mode=0o600)
        if old is not None:
            with contextlib.suppress(FileNotFoundError):
                self._fs.unlink(layout.private_key_path(self.dir, old.key_id))
            self._fs.fsync_dir(self.dir)
        return info

    def _certificate(self, key: Any, kid: str, now_ns: int) -> str:
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, f"{self.subject} export {kid[:8]}"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "vstore"),
            ]
        )
        start = datetime.datetime.fromtimestamp(now_ns / 1e9, datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(int(kid[:30], 16))
            .not_valid_before(start - datetime.timedelta(minutes=5))
            .not_valid_after(start + datetime.timedelta(days=365 * CERT_YEARS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=True,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM).decode()


def _check_purpose(purpose: str) -> None:
    if purpose not in PURPOSES:
        raise UsageError(f"key purpose must be one of {', '.join(PURPOSES)}, not {purpose!r}")

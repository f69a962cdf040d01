"""Keys of the link: CURVE key pairs (ZeroMQ certificates) for encryption/authentication, and an Ed25519 key
pair with which the trainer signs policies (``robodyna keys generate --out DIR --name NAME``).

Files written for ``NAME`` in ``DIR``::

    NAME.key           CURVE public certificate (give it to the other side; the trainer's allow-list)
    NAME.key_secret    CURVE secret certificate (stays on the machine; mode 0600)
    NAME.sign          Ed25519 private key, PEM (mode 0600): the trainer signs policies with it
    NAME.sign.pub      Ed25519 public key, PEM: a robot verifies policies with the trainer's
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


class KeyError_(ValueError):
    """A key file is missing or unreadable (the message names it)."""


def generate_keys(out: str | Path, name: str, overwrite: bool = False) -> dict[str, Path]:
    """Create the CURVE and Ed25519 key pairs of ``name`` in ``out``; refuses to overwrite existing keys."""
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    if not name or "/" in name or name.startswith("."):
        raise KeyError_(f"key name {name!r}: must be a plain file name")
    paths = {"public": d / f"{name}.key", "secret": d / f"{name}.key_secret", "sign": d / f"{name}.sign",
             "sign_pub": d / f"{name}.sign.pub"}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise KeyError_(f"{existing[0]}: exists (keys are never overwritten silently)")
    pub, sec = zmq.auth.create_certificates(str(d), name, metadata={"name": name})
    os.chmod(sec, 0o600)
    sk = Ed25519PrivateKey.generate()
    pem = sk.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                           serialization.NoEncryption())
    fd = os.open(paths["sign"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    paths["sign_pub"].write_bytes(sk.public_key().public_bytes(serialization.Encoding.PEM,
                                                               serialization.PublicFormat.SubjectPublicKeyInfo))
    return paths


def load_curve_public(path: str | Path) -> bytes:
    """The z85 CURVE public key in a certificate file (``NAME.key`` or ``NAME.key_secret``)."""
    try:
        pub, _ = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise KeyError_(f"{path}: not a CURVE certificate ({exc})") from exc
    return pub


def load_curve_pair(path: str | Path) -> tuple[bytes, bytes]:
    """``(public, secret)`` z85 keys from a secret certificate ``NAME.key_secret``."""
    try:
        pub, sec = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise KeyError_(f"{path}: not a CURVE certificate ({exc})") from exc
    if not sec:
        raise KeyError_(f"{path}: holds no secret key (pass NAME.key_secret)")
    return pub, sec


def load_signing_key(path: str | Path) -> Ed25519PrivateKey:
    try:
        k = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise KeyError_(f"{path}: not a PEM private key ({exc})") from exc
    if not isinstance(k, Ed25519PrivateKey):
        raise KeyError_(f"{path}: not an Ed25519 key")
    return k


def load_verify_key(path: str | Path) -> Ed25519PublicKey:
    try:
        k = serialization.load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise KeyError_(f"{path}: not a PEM public key ({exc})") from exc
    if not isinstance(k, Ed25519PublicKey):
        raise KeyError_(f"{path}: not an Ed25519 key")
    return k


def verify_signature(key: Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    try:
        key.verify(signature, data)
        return True
    except InvalidSignature:
        return False


@dataclass(frozen=True)
class RobotKeys:
    """What a robot needs: its own CURVE pair, the trainer's CURVE public key and policy-verification key."""

    public: bytes
    secret: bytes
    server_public: bytes
    policy_verify: Ed25519PublicKey

    @classmethod
    def load(cls, keys_dir: str | Path, name: str, trainer: str = "trainer") -> RobotKeys:
        d = Path(keys_dir)
        pub, sec = load_curve_pair(d / f"{name}.key_secret")
        return cls(pub, sec, load_curve_public(d / f"{trainer}.key"), load_verify_key(d / f"{trainer}.sign.pub"))


@dataclass(frozen=True)
class TrainerKeys:
    """What the trainer needs: its CURVE pair, its policy-signing key and the allowed robots (z85 key -> name)."""

    public: bytes
    secret: bytes
    signing: Ed25519PrivateKey
    allowed: dict[bytes, str]

    @classmethod
    def load(cls, keys_dir: str | Path, name: str = "trainer", allow: list[str] | None = None) -> TrainerKeys:
        """``allow``: robot public certificates (``ROBOT.key`` paths); by default every ``*.key`` in ``keys_dir``
        except the trainer's own. The certificate's name (its file stem) is the robot id it may use."""
        d = Path(keys_dir)
        pub, sec = load_curve_pair(d / f"{name}.key_secret")
        files = [Path(a) for a in allow] if allow else sorted(p for p in d.glob("*.key") if p.stem != name)
        allowed = {load_curve_public(p): p.stem for p in files}
        return cls(pub, sec, load_signing_key(d / f"{name}.sign"), allowed)

"""Attestation keys: PEM elliptic-curve keys, as OpenSSF model-signing takes them (`sign key
--private_key`, `verify key --public_key`), read and used with `cryptography`. A key is named
by the SHA-256 of its public key's PEM (SubjectPublicKeyInfo), model-signing's own key hint.

Make a pair with openssl:
    openssl ecparam -name prime256v1 -genkey -noout -out attest.key
    openssl ec -in attest.key -pubout -out attest.pub
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tether.errors import UsageError



def _hash(size: int) -> hashes.HashAlgorithm:
    """The hash the curve's size asks for (model_signing's choice: P-256 SHA-256, P-384
    SHA-384, P-521 SHA-512)."""
    return {256: hashes.SHA256(), 384: hashes.SHA384()}.get(size) or hashes.SHA512()
_CURVES = ("secp256r1", "secp384r1", "secp521r1")
_MAX_PEM = 64 * 1024


def _read(path: Path, what: str) -> bytes:
    try:
        data = path.read_bytes()[:_MAX_PEM + 1]
    except OSError as exc:
        raise UsageError(f"{what} {path}: {exc.strerror or exc}") from None
    if len(data) > _MAX_PEM:
        raise UsageError(f"{what} {path} is not a PEM key (too large)")
    return data


def _check_curve(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey | object, path: Path, what: str) -> None:
    curve = getattr(getattr(key, "curve", None), "name", None)
    if curve not in _CURVES:
        raise UsageError(f"{what} {path} is not an elliptic-curve key on P-256, P-384 or P-521",
                         hint="make one with: openssl ecparam -name prime256v1 -genkey -noout -out KEY")


def hint_of(public: ec.EllipticCurvePublicKey) -> str:
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(pem).hexdigest()


@dataclass(frozen=True)
class PublicKey:
    key: ec.EllipticCurvePublicKey
    hint: str  # SHA-256 of the PEM

    def verify(self, signature: bytes, data: bytes) -> bool:
        try:
            self.key.verify(signature, data, ec.ECDSA(_hash(self.key.curve.key_size)))
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True)
class PrivateKey:
    key: ec.EllipticCurvePrivateKey

    @property
    def public(self) -> PublicKey:
        pub = self.key.public_key()
        return PublicKey(pub, hint_of(pub))

    def sign(self, data: bytes) -> bytes:
        """A DER-encoded ECDSA signature over `data`, hashed as the curve's size asks."""
        return self.key.sign(data, ec.ECDSA(_hash(self.key.curve.key_size)))


def load_private(path: Path, password: str | None = None) -> PrivateKey:
    data = _read(path, "--key")
    try:
        key = serialization.load_pem_private_key(data, password.encode() if password else None)
    except TypeError:
        raise UsageError(f"--key {path} is encrypted: give its password in TETHER_ATTEST_KEY_PASSWORD") from None
    except (ValueError, UnsupportedAlgorithm):
        raise UsageError(f"--key {path} is not a PEM private key (or the password is wrong)") from None
    _check_curve(key, path, "--key")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return PrivateKey(key)


def load_public(path: Path, what: str = "--public-key") -> PublicKey:
    return public_from_pem(_read(path, what), path, what)


def public_from_pem(data: bytes, path: Path | str, what: str) -> PublicKey:
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise UsageError(f"{what} {path} is not a PEM public key",
                         hint="make it from the private key: openssl ec -in KEY -pubout -out PUB") from None
    _check_curve(key, Path(path), what)
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return PublicKey(key, hint_of(key))

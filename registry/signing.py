"""Signing and verifying artifacts in the OpenSSF model-signing format.

The registry signs a manifest built from the digest it computed while the
upload streamed, so a 1 GiB artifact is never read twice. The bundle is the
same one `model_signing sign key` would write for that file, so the standard
`model_signing verify key` command line verifies a downloaded artifact.
This module is the only one that imports `model_signing`.
"""

import hashlib
import json
import logging
import os
import pathlib
import tempfile
import warnings
from dataclasses import dataclass
from functools import lru_cache

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings
from model_signing._hashing import hashing as ms_hashing
from model_signing import manifest as ms_manifest
from model_signing._signing import sign_ec_key, sign_sigstore_pb, signing as ms_signing

from controlplane.errors import IntegrityFailure, InvalidInput

log = logging.getLogger(__name__)

# What `model_signing` records for a single file hashed with its defaults.
_SERIALIZATION = ms_manifest._FileSerialization(
    "sha256", False, [".github", ".gitignore", ".gitattributes", ".git"]
)


@dataclass(frozen=True)
class PublicKey:
    key_id: str  # sha256 of the PEM, the `hint` model-signing writes into bundles
    name: str
    pem: str
    active: bool  # the key the registry signs with now


@dataclass(frozen=True)
class VerifiedSignature:
    digest: str
    key_id: str
    signer: str


class DevelopmentKeyWarning(UserWarning):
    pass


def _key_id(public_pem: bytes) -> str:
    return hashlib.sha256(public_pem).hexdigest()


def _public_pem(private_key) -> bytes:
    return private_key.public_key().public_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PublicFormat.SubjectPublicKeyInfo,
    )


@lru_cache(maxsize=1)
def _registry_private_key_pem() -> bytes:
    if settings.MLCP_SIGNING_KEY:
        return settings.MLCP_SIGNING_KEY.encode()
    if settings.MLCP_SIGNING_KEY_PATH:
        return pathlib.Path(settings.MLCP_SIGNING_KEY_PATH).read_bytes()
    return _development_key_pem()


def _development_key_pem() -> bytes:
    path = settings.DATA_DIR / "signing" / "development-key.pem"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
    message = (
        f"mlcp is signing with a DEVELOPMENT key generated at {path}. "
        "Set MLCP_SIGNING_KEY (or MLCP_SIGNING_KEY_FILE) before production use."
    )
    warnings.warn(message, DevelopmentKeyWarning, stacklevel=2)
    log.warning("!!! %s", message)
    return path.read_bytes()


def _load_signer() -> sign_ec_key.Signer:
    # model_signing reads keys from paths; keep the secret on disk only for the call.
    with tempfile.NamedTemporaryFile(suffix=".pem") as fh:
        fh.write(_registry_private_key_pem())
        fh.flush()
        return sign_ec_key.Signer(pathlib.Path(fh.name))


def trusted_keys() -> list[PublicKey]:
    """The registry's own public key first, then the configured extra keys."""
    private = serialization.load_pem_private_key(_registry_private_key_pem(), None)
    own = _public_pem(private)
    keys = [PublicKey(_key_id(own), settings.MLCP_SIGNER_IDENTITY, own.decode(), True)]
    for file_name in settings.MLCP_TRUSTED_KEY_FILES:
        pem = pathlib.Path(file_name).read_bytes()
        serialization.load_pem_public_key(pem)  # fail at start-up, not at verify time
        keys.append(PublicKey(_key_id(pem), pathlib.Path(file_name).stem, pem.decode(), False))
    return keys


def active_public_key() -> PublicKey:
    return trusted_keys()[0]


def sign_digest(digest: str, artifact_name: str) -> str:
    """A model-signing bundle (JSON text) for a single file with this SHA-256."""
    item = ms_manifest.FileManifestItem(
        path=pathlib.PurePosixPath("."),
        digest=ms_hashing.Digest("sha256", bytes.fromhex(digest)),
    )
    manifest = ms_manifest.Manifest(artifact_name, [item], _SERIALIZATION)
    signature = _load_signer().sign(ms_signing.Payload(manifest))
    return signature.bundle.to_json()


def verify_bundle(bundle_json: str, digest: str) -> VerifiedSignature:
    """Check that a trusted key signed exactly this digest; raise otherwise."""
    try:
        parsed = json.loads(bundle_json)
        hint = parsed.get("verificationMaterial", {}).get("publicKey", {}).get("hint")
    except (ValueError, AttributeError, RecursionError):  # RecursionError: a bundle nested thousands deep
        raise InvalidInput("the signature bundle is not valid JSON", code="malformed_signature") from None
    candidates = trusted_keys()
    if hint:
        candidates = [k for k in candidates if k.key_id == hint] or candidates
    with tempfile.TemporaryDirectory() as tmp:
        bundle_path = pathlib.Path(tmp, "bundle.sig")
        bundle_path.write_text(bundle_json, encoding="utf-8")
        try:
            signature = sign_sigstore_pb.Signature.read(bundle_path)
        except Exception as exc:
            raise InvalidInput(
                f"the signature bundle cannot be read: {exc}", code="malformed_signature"
            ) from None
        for key in candidates:
            key_path = pathlib.Path(tmp, f"{key.key_id}.pem")
            key_path.write_text(key.pem)
            try:
                manifest = sign_ec_key.Verifier(key_path).verify(signature)
            except Exception:
                continue
            _require_single_file_digest(manifest, digest)
            return VerifiedSignature(digest=digest, key_id=key.key_id, signer=key.name)
    raise IntegrityFailure(
        "no trusted key verifies this signature bundle",
        code="untrusted_signature",
        digest=digest,
    )


def _require_single_file_digest(manifest, digest: str) -> None:
    descriptors = list(manifest.resource_descriptors())
    signed = [d.digest.digest_hex for d in descriptors if d.digest.algorithm == "sha256"]
    if len(descriptors) != 1 or signed != [digest]:
        raise IntegrityFailure(
            f"the signature covers {signed or 'no sha256 digest'}, not sha256:{digest}",
            code="signature_mismatch",
            digest=digest,
        )

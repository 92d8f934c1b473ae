"""Verify a model artifact and hand back exactly the bytes that verified.

The file is read once into memory; those bytes (not the path, which anyone
with write access could swap after the check) are what gets verified and what
the server then loads.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from serving import verification


class ArtifactRejected(Exception):
    """The artifact does not verify (or is not the pinned digest): never serve it."""


@dataclass(frozen=True)
class VerifiedArtifact:
    """Bytes that verified against a bundle, their SHA-256 and the key that signed them."""

    data: bytes
    sha256: str
    public_key: Path


def load_verified_artifact(model_file: Path, bundle_file: Path, public_keys: Sequence[Path],
                           expected_digest: str | None = None) -> VerifiedArtifact:
    """Read ``model_file`` once and return its bytes if any of ``public_keys``
    verifies them against ``bundle_file``; raise `ArtifactRejected` otherwise.

    ``expected_digest`` (``sha256:<hex>`` or bare hex), when given, must also
    match: the controller pins the digest it rolled out, and a valid signature
    over some other version must not pass for it.
    """
    model_file, bundle_file = Path(model_file), Path(bundle_file)
    if not public_keys:
        raise ArtifactRejected("no public key given to verify the artifact with")
    try:
        data = model_file.read_bytes()
        bundle = bundle_file.read_bytes()
    except OSError as exc:
        raise ArtifactRejected(f"cannot read the artifact or its bundle: {exc}") from None
    digest = hashlib.sha256(data).hexdigest()
    if expected_digest and expected_digest.removeprefix("sha256:").lower() != digest:
        raise ArtifactRejected(f"{model_file} hashes to sha256:{digest}, not the pinned {expected_digest}")

    # verify_artifact hashes a path, so give it a private copy of the bytes in
    # memory: whatever happens to model_file from now on, what verified is what
    # we load. (model-signing names a single-file model ".", so the copy's name
    # does not matter.)
    failures = []
    with tempfile.TemporaryDirectory(prefix="mlcp-serve-verify-") as private:
        copy, bundle_copy = Path(private, model_file.name), Path(private, "bundle.sig")
        copy.write_bytes(data)
        bundle_copy.write_bytes(bundle)
        for key in public_keys:
            ok, message = verification.verify_artifact(copy, bundle_copy, Path(key))
            if ok:
                return VerifiedArtifact(data=data, sha256=digest, public_key=Path(key))
            failures.append(f"key {key}: {message.replace(str(copy), str(model_file)).replace(str(bundle_copy), str(bundle_file))}")
    raise ArtifactRejected(f"{model_file} (sha256:{digest}) does not verify against {bundle_file} with any "
                           f"of {len(public_keys)} public key(s): " + "; ".join(failures))

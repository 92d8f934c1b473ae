"""Tests of `mlcp serve`; helpers to sign artifacts with a throwaway key the way
a CI job would (model_signing's library API) and to run signed servers."""

from __future__ import annotations

from pathlib import Path

import model_signing
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from devtools.serve_process import ServeProcess


def keypair(directory: Path, name: str = "ci") -> tuple[Path, Path]:
    """A fresh EC P-256 key: (private PEM path, public PEM path)."""
    key = ec.generate_private_key(ec.SECP256R1())
    private, public = directory / f"{name}.pem", directory / f"{name}.pub"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def signed_artifact(directory: Path, data: bytes, private_key: Path, name: str = "model") -> tuple[Path, Path]:
    """Write ``data`` as ``name.onnx`` and sign it: (artifact path, bundle path)."""
    artifact, bundle = directory / f"{name}.onnx", directory / f"{name}.sig"
    artifact.write_bytes(data)
    model_signing.signing.Config().use_elliptic_key_signer(private_key=private_key).sign(artifact, bundle)
    return artifact, bundle


def serve_signed(directory: Path, data: bytes, *, model: str = "tiny", version: str = "1", track: str = "stable",
                 extra_args=()) -> ServeProcess:
    """A not yet started server of ``data``, signed with a fresh key in ``directory``."""
    directory = directory / f"{model}-{version}-{track}"
    directory.mkdir(parents=True, exist_ok=True)
    private, public = keypair(directory)
    artifact, bundle = signed_artifact(directory, data, private)
    return ServeProcess(artifact, bundle, [public], model=model, version=version, track=track,
                        extra_args=extra_args)

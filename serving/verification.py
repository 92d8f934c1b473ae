"""Offline verification of an artifact against a model-signing bundle and a public key.

The one check both sides of a rollout make: `mlcp serve` before it loads a
model, and `mlcp verify` / `mlcp fetch --verify` on a downloaded one. Only
model_signing's public API (`model_signing.verifying`), so it needs neither the
registry nor Django. (`registry/signing.py` signs, and checks bundles against a
digest it already computed; that needs more than the public API offers.)
"""

from __future__ import annotations

import pathlib


def verify_artifact(artifact: pathlib.Path, bundle: pathlib.Path, public_key: pathlib.Path) -> tuple[bool, str]:
    """(True, message) if ``public_key`` verifies ``bundle`` over exactly the bytes of
    ``artifact``; (False, why) otherwise. Never raises for a bad artifact, bundle or key."""
    import model_signing  # imported on use: `mlcp --help` should not pay for it

    try:
        model_signing.verifying.Config().use_elliptic_key_verifier(public_key=public_key).verify(artifact, bundle)
    except Exception as exc:  # model_signing raises ValueError and crypto errors alike
        return False, f"{artifact} does not match {bundle}: {exc}"
    return True, f"{artifact} matches {bundle}"

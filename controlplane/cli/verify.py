"""Offline verification of a file against a model-signing bundle and a public key."""

import pathlib


def verify_file(file_path: pathlib.Path, bundle_path: pathlib.Path, public_key: pathlib.Path) -> tuple[bool, str]:
    # The CLI verifies outside Django, so it uses model_signing's public API directly.
    import model_signing

    try:
        model_signing.verifying.Config().use_elliptic_key_verifier(public_key=public_key).verify(
            file_path, bundle_path)
    except Exception as exc:  # model_signing raises ValueError and crypto errors alike
        return False, f"{file_path} does not match {bundle_path}: {exc}"
    return True, f"{file_path} matches {bundle_path}"

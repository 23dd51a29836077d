"""Per-installation secrets: made once at random and kept under the state dir (mode 0600).

Used when a secret is not configured, so a fresh install never runs on a key that someone else
knows. Every process of one installation (API instances, CLI) reads the same file; the first
one to need it creates it atomically.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from core.settings import Settings


def installation_secret(state_dir: Path, name: str, *, nbytes: int = 48) -> str:
    """The secret ``name`` of this installation, created on first use."""
    folder = state_dir / "secrets"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / name
    if not path.exists():
        # Written in full under a temporary name, then linked into place: a concurrent reader sees
        # either no file or the whole secret, and of two racing creators the first link wins.
        candidate = folder / f".{name}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(nbytes) + "\n")
        try:
            os.link(candidate, path)
        except FileExistsError:
            pass
        finally:
            candidate.unlink()
    value = path.read_text().strip()
    if len(value) < 32:
        raise RuntimeError(f"{path} holds no usable secret (under 32 characters): delete it to make a new one")
    return value


def jwt_secret(settings: Settings) -> str:
    """The access-token signing key: configured, or this installation's own."""
    if settings.api.jwt_secret is not None:
        return settings.api.jwt_secret.get_secret_value()
    return installation_secret(settings.stack.state_dir, "jwt_secret")


def airflow_password(settings: Settings) -> str:
    """The password of the local Airflow's admin user (made once per installation)."""
    return installation_secret(settings.stack.state_dir, "airflow_admin_password", nbytes=24)

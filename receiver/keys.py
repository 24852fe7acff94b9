"""The service's secrets: new ones (`receiver keys generate`) and the development ones kept in instance/."""

import os
import secrets
from pathlib import Path

from .receipts import generate_signing_key
from .settings import INSTANCE_SECRETS, instance_folder


def new_keys() -> dict[str, str]:
    """A new RECEIPT_SIGNING_KEY, SECRET_KEY and RECEIVER_IDENTITY_KEY, by their variable names."""
    return {"RECEIPT_SIGNING_KEY": generate_signing_key(), "SECRET_KEY": secrets.token_urlsafe(32),
            "RECEIVER_IDENTITY_KEY": secrets.token_urlsafe(32)}


def keep_in_instance(instance: Path | None = None) -> list[Path]:
    """Write the development secrets not yet in instance/ (owner-only); the paths written.

    Settings read them there outside production when the environment does not set them; an
    existing file is never replaced, so restarts keep the links and receipts they signed valid.
    """
    instance = instance or instance_folder()
    instance.mkdir(parents=True, exist_ok=True)
    made = []
    for name, value in new_keys().items():
        path = instance / INSTANCE_SECRETS[name]
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never a readable moment
        except FileExistsError:
            continue
        with os.fdopen(fd, "w") as file:
            file.write(value + "\n")
        made.append(path)
    return made

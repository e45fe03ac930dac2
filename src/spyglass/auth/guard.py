"""Secure by default: an open server (no API key at all) only on loopback."""

from __future__ import annotations

import ipaddress

from spyglass.auth.keys import open_key_store
from spyglass.errors import ConfigError
from spyglass.settings import Settings


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def has_keys(settings: Settings) -> bool:
    if settings.admin_key is not None:
        return True
    with open_key_store(settings) as store:
        return store.active()[1]


def open_server_warning(settings: Settings) -> str | None:
    """The start-up banner's warning for an open server, or None when keys exist.

    An open server on an address other than loopback is refused (``ConfigError``)
    unless ``insecure`` is set: it would answer, and let write, anyone who can
    reach it.
    """
    if has_keys(settings):
        return None
    where = f"{settings.host}:{settings.port}"
    if not is_loopback(settings.host) and not settings.insecure:
        raise ConfigError(
            f"refusing to serve on {where} without API keys: anyone who can reach it could"
            " read and write every collection. Create a key (spyglass keys create --scopes"
            " read,write,admin), set SPYGLASS_ADMIN_KEY, or pass --insecure to serve open."
        )
    return (
        f"OPEN: no API keys exist, so anyone who can reach {where} can read and write."
        " Create one with `spyglass keys create` to require keys."
    )

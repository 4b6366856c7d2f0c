"""URLs as they may be shown: the one redactor for logs, errors, ``config show`` and ``check``."""

from __future__ import annotations

__all__ = ["redact_url"]


def redact_url(url: str) -> str:
    """``url`` with the password in it replaced by ``***``; a URL without one is unchanged.

    The credentials end at the *last* ``@``, so a password holding ``@``, ``/``, ``?`` or ``#``
    (unencoded, as people do paste them) is still hidden whole rather than half printed.

    >>> redact_url("postgresql://app:s3cr/et@db:5432/settings")
    'postgresql://app:***@db:5432/settings'
    >>> redact_url("redis://cache:6379/0")
    'redis://cache:6379/0'
    """
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user, colon, _ = credentials.partition(":")
    return f"{scheme}://{user}:***@{host}" if colon else url

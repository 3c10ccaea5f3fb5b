"""What a broker URL must hold before anything is planned on it: a Redis scheme, a port, a database number.

kombu reads the URL only when the first message is sent; a port or database that is not a number then
stopped a run already written, with a message from inside redis-py.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from budgetq.errors import ConfigurationError

REDIS_SCHEMES = ("redis://", "rediss://", "redis+socket://", "unix://")
SOCKET_SCHEMES = ("redis+socket", "unix")


def check_broker_url(url: str) -> None:
    """Raise ConfigurationError naming BUDGETQ_REDIS_URL and the fix unless ``url`` names a Redis database."""
    shown = url.split("@")[-1]  # never the password
    if not url.startswith(REDIS_SCHEMES):
        raise ConfigurationError(
            f"broker URL {shown!r} is not a Redis URL; set BUDGETQ_REDIS_URL to redis://host:6379/0"
        )
    parts = urlsplit(url)
    if parts.scheme in SOCKET_SCHEMES:
        if not parts.path:
            raise ConfigurationError(
                f"broker URL {shown!r} names no socket; set BUDGETQ_REDIS_URL to redis+socket:///path/redis.sock"
            )
        return
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when it is read
    except ValueError as exc:
        raise ConfigurationError(
            f"broker URL {shown!r} has a bad port ({exc}); set BUDGETQ_REDIS_URL to redis://host:6379/0"
        ) from None
    database = parts.path.strip("/")
    if database and not (database.isascii() and database.isdigit()):
        raise ConfigurationError(
            f"broker URL {shown!r} names database {database!r}, not a number; "
            "set BUDGETQ_REDIS_URL to redis://host:6379/0"
        )

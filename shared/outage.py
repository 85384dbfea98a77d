"""Infrastructure outages told apart from bad messages (docs/reliability.md).

A handler that fails because PostgreSQL or RabbitMQ is unreachable says nothing about its message: the
bus waits the outage out (`shared.bus.Bus`) without spending the retry budget meant for messages that
fail by themselves, which then go to the dead-letter queue. `is_outage` decides which is which, looking
through the exception's causes (SQLAlchemy wraps the driver's errors).
"""

from __future__ import annotations

import errno

# Connection-level errnos: the peer is gone or not there yet. A missing file (ENOENT) is not an outage.
OUTAGE_ERRNOS = frozenset({errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE,
                           errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT, errno.ENOTCONN,
                           errno.ESHUTDOWN, errno.EADDRNOTAVAIL})
# PostgreSQL SQLSTATEs of a server going away or not accepting connections yet: class 08 (connection
# exception), 57P01–57P03 (admin/crash shutdown, cannot connect now), 53300 (too many connections).
OUTAGE_SQLSTATE_PREFIXES = ("08", "57P0", "53300")
# Driver and broker client exception classes that only ever mean "the connection is gone".
OUTAGE_CLASS_NAMES = frozenset({
    "ConnectionDoesNotExistError", "InterfaceError", "InternalClientError", "CannotConnectNowError",
    "AdminShutdownError", "CrashShutdownError", "ConnectionFailureError", "TooManyConnectionsError",
    "PostgresConnectionError", "ClientCannotConnectError",
    # aiormq / aio-pika
    "AMQPConnectionError", "ConnectionClosed", "ChannelClosed", "ChannelInvalidStateError",
    "ChannelNotFoundEntity", "AMQPChannelError", "IncompatibleProtocolError",
})


def _causes(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or any(current is s for s in seen) or len(seen) > 20:
            continue
        seen.append(current)
        todo += [current.__cause__, current.__context__, getattr(current, "orig", None)]
        if isinstance(current, BaseExceptionGroup):
            todo += list(current.exceptions)
    return seen


def _one_is_outage(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    if isinstance(exc, OSError) and exc.errno in OUTAGE_ERRNOS:
        return True
    if isinstance(exc, OSError) and exc.errno is None and "Connect call failed" in str(exc):
        return True  # asyncio's "Multiple exceptions: [Errno 111] Connect call failed …"
    names = {cls.__name__ for cls in type(exc).__mro__}
    module = type(exc).__module__
    if names & OUTAGE_CLASS_NAMES and module.startswith(("asyncpg", "aiormq", "aio_pika", "pamqp")):
        return True
    sqlstate = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    if isinstance(sqlstate, str) and sqlstate.startswith(OUTAGE_SQLSTATE_PREFIXES):
        return True
    if module.startswith("sqlalchemy"):
        if getattr(exc, "connection_invalidated", False):
            return True
        if "DisconnectionError" in names or "InterfaceError" in names:
            return True
        if "OperationalError" in names and "sqlite" not in str(exc).lower():
            return True  # PostgreSQL's operational errors are the server's state, not the statement's
        if "OperationalError" in names and "database is locked" in str(exc):
            return True
    return False


def is_outage(exc: BaseException) -> bool:
    """The failure is the infrastructure's (a database or broker connection), not the message's."""
    return any(_one_is_outage(e) for e in _causes(exc))

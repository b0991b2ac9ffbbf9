"""The service's Redis: one server, or a Redis Cluster (REDIS_CLUSTER=1), at
REDIS_URL; the lean calls the hot paths make on it; and a Django cache
backend for a Cluster (Django's own RedisCache speaks to one server only).

On a Cluster every key one Lua script touches must sit in one hash slot and
be declared in KEYS: the collect endpoint's keys all carry the hash tag
`HOT` ("{et}"), so its one script runs on the master that holds that slot.
"""

import logging
import os
import threading
import time

import redis as redis_lib
from django.conf import settings
from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from redis import exceptions as redis_errors
from redis.cluster import RedisCluster
from redis.utils import HIREDIS_AVAILABLE

if HIREDIS_AVAILABLE:
    from hiredis import pack_command
else:
    pack_command = None

log = logging.getLogger(__name__)

OUTAGE_SECONDS = 5  # after a failed connection, Redis is left alone this long
HOT = "{et}"  # the collect endpoint's hash tag: its script's keys share one slot
TIMEOUTS = {"socket_timeout": 2, "socket_connect_timeout": 2}


def enabled() -> bool:
    return bool(getattr(settings, "REDIS_URL", ""))


# Redis down: the callers that can do without it (the collect fast path, its
# cache writes, the limiter) skip it for OUTAGE_SECONDS after a failure, so
# that an unreachable server costs one connection timeout per few seconds and
# process, not one per request; then the next request tries again, and the
# fast path resumes by itself once Redis answers.
_down_until = 0.0


def available() -> bool:
    return time.monotonic() >= _down_until


def note_outage(error: Exception) -> None:
    global _down_until
    if available():
        log.warning("Redis unreachable (%s): doing without it for %s s", error, OUTAGE_SECONDS)
    _down_until = time.monotonic() + OUTAGE_SECONDS


def is_cluster() -> bool:
    return bool(getattr(settings, "REDIS_CLUSTER", False))


def connect():
    """A new client for REDIS_URL: a RedisCluster when REDIS_CLUSTER is on
    (REDIS_URL then names any one of its masters; the rest are discovered)."""
    if is_cluster():
        return RedisCluster.from_url(settings.REDIS_URL, **TIMEOUTS)
    return redis_lib.Redis.from_url(settings.REDIS_URL, **TIMEOUTS)


def _clustered(client) -> bool:
    """Whether `client` is a RedisCluster. A plain Redis is told by its type
    at once: isinstance against RedisCluster (a typing Protocol underneath)
    costs a few microseconds, and the hot paths ask it on every exchange."""
    return type(client) is not redis_lib.Redis and isinstance(client, RedisCluster)


def _first_key(command) -> str | bytes | None:
    name = str(command[0]).upper()
    if name in ("EVAL", "EVALSHA"):
        return command[3] if int(command[2]) > 0 else None
    return command[1] if len(command) > 1 else None


def _pool(client, commands):
    """The connection pool that serves `commands`: on a Cluster, the master of
    the first command's first key (every key of one exchange shares its slot)."""
    if _clustered(client):
        key = _first_key(commands[0])
        node = client.get_node_from_key(key) if key is not None else client.get_default_node()
        return node.redis_connection.connection_pool
    return client.connection_pool


def exchange(client, *commands) -> list:
    """Send `commands` in one write and read their replies: one round trip, as a
    pipeline, without redis-py's per-call machinery (the collect endpoint pays
    for it on every page view). An error reply is returned as its exception.
    A pooled connection that broke meanwhile (Redis restarted) is replaced
    once, as redis-py's own retry would; on a Cluster whose slots moved the
    map is read again and the commands sent once more."""
    try:
        replies = _exchange_once(client, commands)
    except redis_errors.ConnectionError:
        if _clustered(client):
            client.nodes_manager.initialize()
        return _exchange_once(client, commands)
    return _settled(client, commands, replies)


def _settled(client, commands, replies: list) -> list:
    if _clustered(client) and any(isinstance(r, redis_errors.AskError) for r in replies):
        client.nodes_manager.initialize()  # MOVED / ASK: a resharding moved the slot
        replies = _exchange_once(client, commands)
    return replies


class Pending:
    """Commands sent by `send` whose replies are read later, by `replies()`:
    the round trip runs while the caller does other work."""

    def __init__(self, client, commands):
        self.client = client
        self.commands = commands
        self._read = None  # (pool, connection) until the replies are read
        self._replies = None
        self._failure = None

    def replies(self) -> list:
        """The replies, as `exchange` gives them (and with its retry: a
        connection that broke is replaced once and the commands sent again)."""
        if self._read is not None:
            self._finish()
        if self._failure is not None:
            if not isinstance(self._failure, redis_errors.ConnectionError):
                raise self._failure
            if _clustered(self.client):
                self.client.nodes_manager.initialize()
            self._failure = None
            self._replies = _exchange_once(self.client, self.commands)
        self._replies = _settled(self.client, self.commands, self._replies)
        return self._replies

    def _finish(self) -> None:
        """Read the replies off the connection (also done by the next exchange
        on this thread's connection, which must not read them as its own)."""
        pool, connection = self._read
        self._read = None
        if not _clustered(self.client):
            _held.unread.pop(id(pool), None)
        broken = True
        try:
            self._replies = _read_replies(connection, self.commands)
            broken = False
        except Exception as error:  # noqa: BLE001 - given to replies(), which retries or raises it
            self._failure = error
        finally:
            _done(self.client, pool, connection, broken)


def send(client, *commands) -> Pending:
    """Send `commands` in one write now and read their replies later, with
    Pending.replies(): `exchange` split in two, so the wait for Redis overlaps
    the caller's own work. Raises as `exchange` does when the commands cannot
    be sent (after one retry on a fresh connection)."""
    pending = Pending(client, commands)
    try:
        _send_once(client, pending)
    except redis_errors.ConnectionError:
        if _clustered(client):
            client.nodes_manager.initialize()
        _send_once(client, pending)
    return pending


def _send_once(client, pending: Pending) -> None:
    pool, connection = _connection(client, pending.commands)
    try:
        connection.send_packed_command(_packed(connection, pending.commands), check_health=False)
    except BaseException:
        _done(client, pool, connection, True)
        raise
    pending._read = (pool, connection)
    if not _clustered(client):
        _held.unread[id(pool)] = pending


class _Held(threading.local):
    """Each thread's own connection per server, kept from one exchange to the
    next: a page view's round trip then costs no trip through redis-py's pool
    (its lock, its check that the connection has nothing left to read, its
    bookkeeping), about a tenth of the route's own work. The connection is
    made as the pool would make it, but is not the pool's: it goes when its
    thread does, and a forked child makes its own."""

    def __init__(self):
        self.pid = os.getpid()
        self.connections: dict[int, tuple] = {}  # id(pool) -> (pool, connection)
        self.unread: dict[int, Pending] = {}  # id(pool) -> commands sent whose replies are still to read


_held = _Held()


def _connection(client, commands):
    """(pool, connection) for `commands`: on one server this thread's held
    connection; on a Cluster (whose map of nodes changes) one from the pool."""
    pool = _pool(client, commands)
    if _clustered(client):
        return pool, pool.get_connection()
    held = _held
    if held.pid != os.getpid():
        held.pid, held.connections, held.unread = os.getpid(), {}, {}
    unread = held.unread.get(id(pool))
    if unread is not None:
        unread._finish()  # its replies come first on the connection
    found = held.connections.get(id(pool))
    if found is None:
        found = held.connections[id(pool)] = (pool, pool.connection_class(**pool.connection_kwargs))
    return found


def _done(client, pool, connection, broken: bool) -> None:
    if broken:
        connection.disconnect()  # not reused half-read or half-written
    if _clustered(client):
        pool.release(connection)
    elif broken:
        _held.connections.pop(id(pool), None)


def _packed(connection, commands) -> list[bytes]:
    """`commands` in the Redis protocol. With hiredis, each command goes
    straight to its packer: redis-py's own wrapper around it looks at every
    argument first (a bytearray or memoryview, a command name holding spaces),
    which cost the collect endpoint's script call more than the packing; a
    command such an argument would need still takes redis-py's way."""
    if pack_command is not None and not any(" " in str(command[0]) for command in commands):
        try:
            return [b"".join([pack_command(command) for command in commands])]
        except TypeError:  # a bytearray or memoryview
            pass
    return connection.pack_commands(commands)


def _exchange_once(client, commands) -> list:
    pool, connection = _connection(client, commands)
    broken = True
    try:
        connection.send_packed_command(_packed(connection, commands), check_health=False)
        replies = _read_replies(connection, commands)
        broken = False
        return replies
    finally:
        _done(client, pool, connection, broken)


def _read_replies(connection, commands) -> list:
    replies = []
    for _command in commands:
        try:
            replies.append(connection.read_response())
        except redis_errors.ResponseError as error:
            replies.append(error)
    return replies


_SKIP = ("CLIENT", "REPLY", "SKIP")


def send_without_reply(client, *commands: tuple) -> None:
    """Send `commands` (each a tuple) whose answers nobody waits for (CLIENT
    REPLY SKIP before each), in one write: a cache write that costs a request
    no round trip. A failure is logged, never raised: the cache only saves
    work, the database has the truth."""
    if not available():
        return
    try:
        pool, connection = _connection(client, list(commands))
        if not connection.is_connected:
            connection.connect()
    except Exception as error:  # noqa: BLE001 - Redis unreachable: the next request takes the slow path
        note_outage(error)
        return
    broken = True
    try:
        skipped = [part for command in commands for part in (_SKIP, command)]
        connection.send_packed_command(_packed(connection, skipped))
        broken = False
    except Exception:  # noqa: BLE001 - as above; the connection is not reused half-written
        log.warning("Redis write failed: a cache write was skipped", exc_info=True)
    finally:
        _done(client, pool, connection, broken)


class _ClusterCacheClient(RedisCacheClient):
    """Django's Redis cache client over one RedisCluster: keys go to their
    slot's master; the many-key calls are split by slot."""

    _cluster = None

    def get_client(self, key=None, *, write=False):
        if self._cluster is None:
            options = {k: v for k, v in self._pool_options.items() if k != "parser_class"}
            self._cluster = RedisCluster.from_url(self._servers[0], **{**TIMEOUTS, **options})
        return self._cluster

    def get_many(self, keys):
        keys = list(keys)
        values = self.get_client().mget_nonatomic(keys)
        return {
            key: self._serializer.loads(value) for key, value in zip(keys, values, strict=True) if value is not None
        }

    def set_many(self, data, timeout):
        pipeline = self.get_client(write=True).pipeline()
        for key, value in data.items():
            if timeout == 0:
                pipeline.delete(key)
            else:
                pipeline.set(key, self._serializer.dumps(value), ex=timeout)
        pipeline.execute()


class ClusterCache(RedisCache):
    """CACHES backend for a Redis Cluster (config/settings.py picks it with REDIS_CLUSTER=1)."""

    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = _ClusterCacheClient

"""The Redis ACL of the `ringleader` user: every command ringleader sends, on its keys only.

One place for it, so README can quote it and `local up --secure` runs with exactly it.
Commands were collected from every Redis call in worker/, registry/ and ringleader/
(Python calls, pipelines, redis-py's `Script`, and each `redis.call` in the Lua scripts,
which Redis checks against the caller's ACL, keys included), then checked by running the
Redis test files as this user (ACL LOG empty of ringleader's own calls).

Keys: ringleader names every key `ringleader:<namespace>:...` (results, run ledger, retry
set: `ResultStore`, `TaskLedger`, `DelayedSet`) or `ringleader:registry:...` (registry and
shared breakers, RINGLEADER_REGISTRY_PREFIX's default), so `~ringleader:*` covers every
namespace. To confine a user to one namespace NS, use `~ringleader:NS:* ~ringleader:registry:*`
instead; a registry prefix of your own (RINGLEADER_REGISTRY_PREFIX=P) needs `~P:*` added.
"""

from __future__ import annotations

import hashlib

__all__ = [
    "ADMIN_RULES",
    "RINGLEADER_COMMANDS",
    "RINGLEADER_KEYS",
    "RINGLEADER_RULES",
    "acl_setuser",
    "config_line",
]

RINGLEADER_KEYS = "~ringleader:*"

RINGLEADER_COMMANDS = (
    # connection: health probes; SELECT only with a /N other than /0 in the URL. (redis-py
    # also sends CLIENT SETINFO on connect and ignores a refusal; Redis 7.0 has no such
    # subcommand, so an ACL naming it does not load there. On 7.2+ add `+client|setinfo`
    # to keep the refusals out of ACL LOG.)
    "ping", "select",
    # strings: completion records and statuses (results), worker liveness (ledger),
    # registry epoch/seq/digest (INCR in Lua), pybreaker's shared breaker state (its
    # `incr` is redis-py's, which sends INCRBY; a refusal there is only logged by pybreaker)
    "get", "set", "setnx", "mget", "incr", "incrby", "del", "exists", "pexpire",
    # hashes: run records and running tasks (ledger), delayed envelopes, registry
    "hget", "hset", "hdel", "hgetall", "hincrby",
    # lists: the completion wake-up token (BLMOVE list->same list), the demo app's log
    "rpush", "blmove", "lrange",
    # sorted sets: the retry set (DelayedSet), registry leases
    "zadd", "zrem", "zscore", "zcard", "zcount", "zrange", "zrangebyscore",
    # streams: the registry's change log
    "xadd", "xrange",
    # `ringleader status` finds shared breakers by SCAN MATCH ringleader:registry:breaker:*
    "scan",
    # registry snapshots (MULTI/EXEC pipelines); pybreaker's WATCH transaction
    "multi", "exec", "discard", "watch", "unwatch",
    # redis-py's Script: EVALSHA, then SCRIPT LOAD after NOSCRIPT; pipelines check
    # SCRIPT EXISTS first
    "evalsha", "script|load", "script|exists",
)  # fmt: skip

# `resetchannels`: ringleader uses no pub/sub. `-@all` first, so nothing else is allowed.
RINGLEADER_RULES = " ".join(
    ["resetchannels", "-@all", *(f"+{c}" for c in RINGLEADER_COMMANDS), RINGLEADER_KEYS]
)

# The local stack's admin: tests flush and inspect with it; never handed to workers.
ADMIN_RULES = "~* &* +@all"


def acl_setuser(user: str, password: str, rules: str = RINGLEADER_RULES) -> list[str]:
    """The ACL SETUSER command (as arguments) for a running Redis: `reset` first, so it
    replaces whatever the user had."""
    return ["ACL", "SETUSER", user, "reset", "on", f">{password}", *rules.split()]


def config_line(user: str, password: str, rules: str) -> str:
    """A redis.conf `user` line; the password goes in as its SHA-256 (`#<hex>`), so the
    file holds no password."""
    digest = hashlib.sha256(password.encode()).hexdigest()
    return f"user {user} reset on #{digest} {rules}"

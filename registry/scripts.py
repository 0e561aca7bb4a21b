"""Lua scripts that make every registry write atomic with its log entry and hashcode update.

Each script runs as one unit in Redis (EVALSHA through redis-py's `Script`, which falls
back to EVAL after a restart flushed the script cache). KEYS are always, in order:

    1 inst      hash   key -> canonical encoding
    2 meta      hash   key -> "<64-hex term> <STATUS> <lease duration>": what a script
                       needs to undo the key's hashcode terms or renew its lease
    3 counts    hash   STATUS -> count of instances (zero counts removed)
    4 digest    string 64-hex sum mod 2^256 of every term
    5 seq       string last sequence number handed out
    6 log       stream recent changes, id "<seq>-0", capped at MAXLEN = log size
    7 leases    zset   key -> lease expiry (seconds since the epoch, given by the caller)
    8 epoch     string random id of this registry's history (a restart that lost data
                       starts a new one, so a client can never mistake an old seq for new)
    9 selfpres  hash   self-preservation flag: paused, since, lapsed, total, updated

sha256 is not available to Redis Lua, so the writer sends the instance's digest term;
the script only adds and subtracts 256-bit numbers (16-bit limbs: exact in Lua doubles).
"""

from __future__ import annotations

_COMMON = r"""
local K_INST, K_META, K_COUNTS, K_DIGEST, K_SEQ, K_LOG, K_LEASES, K_EPOCH, K_SELFPRES =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local ZERO = string.rep('0', 64)

local function limbs(h)
  local t = {}
  for i = 1, 16 do t[i] = tonumber(string.sub(h, i * 4 - 3, i * 4), 16) end
  return t
end

-- a + sign * b mod 2^256, on 64-hex strings
local function addhex(a, b, sign)
  local x, y = limbs(a), limbs(b)
  local carry = 0
  for i = 16, 1, -1 do
    local v = x[i] + sign * y[i] + carry
    if v >= 65536 then v = v - 65536; carry = 1
    elseif v < 0 then v = v + 65536; carry = -1
    else carry = 0 end
    x[i] = string.format('%04x', v)
  end
  return table.concat(x)
end

local function digest() return redis.call('GET', K_DIGEST) or ZERO end

local function log(op, key, value, why, logmax)
  local seq = redis.call('INCR', K_SEQ)
  redis.call('XADD', K_LOG, 'MAXLEN', logmax, seq .. '-0',
             'op', op, 'k', key, 'v', value, 'why', why)
  return seq
end

-- remove a key's content and its hashcode terms; returns true if it existed
local function remove(key)
  local meta = redis.call('HGET', K_META, key)
  if not meta then return false end
  local d, st = string.match(meta, '^(%x+) (%S+) ')
  redis.call('SET', K_DIGEST, addhex(digest(), d, -1))
  if redis.call('HINCRBY', K_COUNTS, st, -1) <= 0 then redis.call('HDEL', K_COUNTS, st) end
  redis.call('HDEL', K_META, key)
  redis.call('HDEL', K_INST, key)
  return true
end

local function current_seq() return tonumber(redis.call('GET', K_SEQ) or '0') end
"""

# ARGV: key, encoded, term hex, status, lease duration, expect ('*' any, '' absent, else the
#       current term), log max, lease expiry ('' = leave the lease alone), why, epoch candidate
# Returns {1, seq, changed} or {0, current term or ''} on a failed compare-and-set.
PUT = (
    _COMMON
    + r"""
local key, enc, term, status, duration = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local expect, logmax, expiry, why = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
redis.call('SETNX', K_EPOCH, ARGV[10])
local meta = redis.call('HGET', K_META, key)
local cur = ''
if meta then cur = string.sub(meta, 1, 64) end
if expect ~= '*' and expect ~= cur then return {0, cur} end
if expiry ~= '' then redis.call('ZADD', K_LEASES, expiry, key) end
if cur == term then return {1, current_seq(), 0} end
remove(key)
redis.call('HSET', K_INST, key, enc)
redis.call('HSET', K_META, key, term .. ' ' .. status .. ' ' .. duration)
redis.call('HINCRBY', K_COUNTS, status, 1)
redis.call('SET', K_DIGEST, addhex(digest(), term, 1))
return {1, log('put', key, enc, why, logmax), 1}
"""
)

# ARGV: key, log max, why, epoch candidate. Returns seq, or 0 if the key was absent.
DELETE = (
    _COMMON
    + r"""
local key, logmax, why = ARGV[1], ARGV[2], ARGV[3]
redis.call('SETNX', K_EPOCH, ARGV[4])
if not remove(key) then return 0 end
redis.call('ZREM', K_LEASES, key)
return log('del', key, '', why, logmax)
"""
)

# ARGV: key, now. Returns 1 if renewed, 0 if the instance is not registered. The new
# expiry is now + the duration stored in meta, so a renewal is one round trip and atomic.
# A renewal changes no replicated content, so it writes no log entry (see model.py).
RENEW = (
    _COMMON
    + r"""
local meta = redis.call('HGET', K_META, ARGV[1])
if not meta then return 0 end
local duration = string.match(meta, ' (%S+)$')
local expiry = string.format('%.17g', tonumber(ARGV[2]) + tonumber(duration))
redis.call('ZADD', K_LEASES, expiry, ARGV[1])
return 1
"""
)

# ARGV: now, max lapsed share, min leases for self-preservation, log max, epoch candidate
# Returns {paused, was_paused, lapsed, total, evicted, seq}
EVICT = (
    _COMMON
    + r"""
local now, share, minleases, logmax = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
redis.call('SETNX', K_EPOCH, ARGV[5])
local total = redis.call('ZCARD', K_LEASES)
local lapsed = redis.call('ZCOUNT', K_LEASES, '-inf', now)
local was = tonumber(redis.call('HGET', K_SELFPRES, 'paused') or '0')
if total >= minleases and lapsed > share * total then
  if was == 0 then redis.call('HSET', K_SELFPRES, 'since', now) end
  redis.call('HSET', K_SELFPRES, 'paused', 1, 'lapsed', lapsed, 'total', total, 'updated', now)
  return {1, was, lapsed, total, 0, current_seq()}
end
redis.call('HSET', K_SELFPRES, 'paused', 0, 'lapsed', lapsed, 'total', total, 'updated', now)
local keys = redis.call('ZRANGEBYSCORE', K_LEASES, '-inf', now)
local n = 0
for _, key in ipairs(keys) do
  redis.call('ZREM', K_LEASES, key)
  if remove(key) then log('del', key, '', 'evict', logmax); n = n + 1 end
end
return {0, was, lapsed, total, n, current_seq()}
"""
)

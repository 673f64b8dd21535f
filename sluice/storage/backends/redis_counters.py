"""Limit counters in Redis, shared by every gateway replica; same semantics as `MemoryCounters`.

Each method is one Lua script (EVALSHA, over the lean client in `resp.py`), so it is atomic over
all the buckets it is given: no two replicas can both pass a check that only one fits, and a
refused reservation changes nothing.

Deployment: a single Redis node (or a primary with replicas/Sentinel). A reservation touches
several buckets in one script, and the keys are plain (no `{hash tags}`), so they would fall in
different Redis Cluster slots: Redis Cluster is not supported.

Layout, for a bucket whose key is K (with the default prefix "sluice:"):

    sluice:limit:c:K   hash    used -> settled usage; reserved -> sum of the live reservations
    sluice:limit:r:K   hash    request id -> amount it holds (its reservation)
    sluice:limit:l:K   zset    request id, scored by the end of its lease (caller's `now` + lease)
    sluice:limit:s:K   zset    request ids already settled (score: when), so settling is idempotent

and, for runaway detection's spend rate (`add_spend`), per session digest D and window W seconds:

    sluice:rate:z:W:D  zset    request ids, scored by when they settled
    sluice:rate:h:W:D  hash    request id -> its cost
    sluice:rate:t:W:D  string  the window's total (INCRBY in, out as requests age past W)

The bucket "has a counter" (see `seed`) once the `used` field exists; `reserve` and `settle`
create it at 0, as `MemoryCounters` does. Reservations whose lease ended (lease end <= now) are
purged at the start of every reserve, in O(lapsed reservations), and subtracted from the running
`reserved` total. When a bucket has a window (`expires_at` > 0) every write sets all its keys to
expire (PEXPIREAT, on the Redis clock) `_GRACE_S` after the window ends, so finished windows clean
themselves up. Buckets without a window (requests in flight) never expire. Every bucket forgets its
settled ids after `SETTLED_RETENTION_S`, or that set would grow with every request ever made
(without a window) or made in the window (a monthly budget: one id per request for a month).

Numbers: amounts, usage and limits travel as decimal strings and are stored by INCRBY/HINCRBY,
so they are exact 64-bit integers (|n| < 2^63). Lua only has doubles (exact below 2^53, which is
only ~$9,007 in pico-dollars), so the limit check does not add doubles: it splits each number in
two base-10^9 limbs and compares exactly. No Lua number is ever passed back to Redis (Redis would
format it with "%.17g"); lease ends and `now` are Python float reprs given to ZADD/ZRANGEBYSCORE as is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Coroutine, Sequence
from typing import Any

from sluice.storage.backends.resp import RespClient, bulk
from sluice.storage.records import Bucket, BucketState

_GRACE_S = 60.0  # keep a finished window a little, for settlements that arrive late
SETTLED_RETENTION_S = 86_400.0  # how long a bucket remembers settled request ids (settle is idempotent)

# Shared Lua helpers. `neg` negates a canonical integer string ("0" has no "-0": Redis refuses it).
# `exceeds` is the exact test used + reserved + amount > limit over canonical integer strings.
_LUA_HELPERS = """
local function neg(s)
  if s == '0' then return nil end
  if string.sub(s, 1, 1) == '-' then return string.sub(s, 2) end
  return '-' .. s
end

local function limbs(s)
  local negative = string.sub(s, 1, 1) == '-'
  local digits = negative and string.sub(s, 2) or s
  local n = string.len(digits)
  local hi, lo = 0, 0
  if n > 9 then
    hi = tonumber(string.sub(digits, 1, n - 9))
    lo = tonumber(string.sub(digits, n - 8))
  else
    lo = tonumber(digits)
  end
  if negative then return -hi, -lo end
  return hi, lo
end

local function exceeds(used, reserved, amount, limit)
  local h1, l1 = limbs(used)
  local h2, l2 = limbs(reserved)
  local h3, l3 = limbs(amount)
  local h4, l4 = limbs(limit)
  local hi = h1 + h2 + h3 - h4
  local lo = l1 + l2 + l3 - l4
  local carry = math.floor(lo / 1000000000)
  hi = hi + carry
  lo = lo - carry * 1000000000
  return hi > 0 or (hi == 0 and lo > 0)
end

local function purge(c, r, l, now)
  local lapsed = redis.call('ZRANGEBYSCORE', l, '-inf', now)
  if #lapsed == 0 then return end
  for _, rid in ipairs(lapsed) do
    local held = redis.call('HGET', r, rid)
    if held then
      redis.call('HDEL', r, rid)
      local minus = neg(held)
      if minus then redis.call('HINCRBY', c, 'reserved', minus) end
    end
  end
  redis.call('ZREMRANGEBYSCORE', l, '-inf', now)
end

local function expire(base, expire_ms)
  if expire_ms ~= '0' then
    for k = base + 1, base + 4 do redis.call('PEXPIREAT', KEYS[k], expire_ms) end
  end
end
"""

# KEYS: 4 per bucket (c, r, l, s). ARGV: request id, now, lease end, then per bucket: limit, amount,
# expiry in ms ("0": none). Returns {index of the first refusing bucket or -1, then per bucket: used,
# reserved, and what the request itself holds there}.
_RESERVE = (
    _LUA_HELPERS
    + """
local rid, now, lease_end = ARGV[1], ARGV[2], ARGV[3]
local n = #KEYS / 4
local refused = -1
for i = 1, n do
  local c, r, l = KEYS[4 * i - 3], KEYS[4 * i - 2], KEYS[4 * i - 1]
  redis.call('HSETNX', c, 'used', '0')
  purge(c, r, l, now)
  local amount = ARGV[3 * i + 2]
  if refused < 0 and tonumber(amount) > 0 then
    local used = redis.call('HGET', c, 'used')
    local reserved = redis.call('HGET', c, 'reserved') or '0'
    if exceeds(used, reserved, amount, ARGV[3 * i + 1]) then refused = i - 1 end
  end
end
local out = {refused}
for i = 1, n do
  local c, r, l = KEYS[4 * i - 3], KEYS[4 * i - 2], KEYS[4 * i - 1]
  if refused < 0 then
    local amount = ARGV[3 * i + 2]
    redis.call('HINCRBY', r, rid, amount)
    redis.call('HINCRBY', c, 'reserved', amount)
    redis.call('ZADD', l, lease_end, rid)
  end
  out[3 * i - 1] = redis.call('HGET', c, 'used')
  out[3 * i] = redis.call('HGET', c, 'reserved') or '0'
  out[3 * i + 1] = redis.call('HGET', r, rid) or '0'
  expire(4 * (i - 1), ARGV[3 * i + 3])  -- last: a window long over is deleted at once
end
return out
"""
)

# KEYS: 4 per bucket. ARGV: request id, now, forget settled ids up to this time, then per bucket:
# amount used, expiry in ms ("0": none).
_SETTLE = (
    _LUA_HELPERS
    + """
local rid, now, forget = ARGV[1], ARGV[2], ARGV[3]
for i = 1, #KEYS / 4 do
  local c, r, l, s = KEYS[4 * i - 3], KEYS[4 * i - 2], KEYS[4 * i - 1], KEYS[4 * i]
  local amount, expire_ms = ARGV[2 * i + 2], ARGV[2 * i + 3]
  redis.call('HSETNX', c, 'used', '0')
  local held = redis.call('HGET', r, rid)
  if held then
    redis.call('HDEL', r, rid)
    local minus = neg(held)
    if minus then redis.call('HINCRBY', c, 'reserved', minus) end
  end
  redis.call('ZREM', l, rid)
  if redis.call('ZADD', s, 'NX', now, rid) == 1 then
    redis.call('HINCRBY', c, 'used', amount)
  end
  redis.call('ZREMRANGEBYSCORE', s, '-inf', '(' .. forget)
  expire(4 * (i - 1), expire_ms)
end
return 1
"""
)

# KEYS: the bucket's 4 keys. ARGV: used, expiry in ms ("0": none). Returns 1 when it set the counter.
_SEED = (
    _LUA_HELPERS
    + """
local set = redis.call('HSETNX', KEYS[1], 'used', ARGV[1])
expire(0, ARGV[2])
return set
"""
)

# A session's spend over sliding windows (runaway detection's spend rate), exact across replicas.
# KEYS: 3 per window (z: request ids scored by when they settled, h: request id -> cost, t: the
# window's running total). ARGV: request id, now, cost, then per window: its start (now - window)
# and how long its keys live unused, in ms (PEXPIRE: relative, on the Redis clock). A request is
# added once (HSETNX); those older than the start are taken out of the total. Returns each
# window's total, an exact integer string.
_SPEND_RATE = (
    _LUA_HELPERS
    + """
local rid, now, cost = ARGV[1], ARGV[2], ARGV[3]
local out = {}
for i = 1, #KEYS / 3 do
  local z, h, t = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local start, ttl_ms = ARGV[2 * i + 2], ARGV[2 * i + 3]
  if redis.call('HSETNX', h, rid, cost) == 1 then
    redis.call('ZADD', z, now, rid)
    redis.call('INCRBY', t, cost)
  end
  local lapsed = redis.call('ZRANGEBYSCORE', z, '-inf', '(' .. start)
  if #lapsed > 0 then
    for _, old in ipairs(lapsed) do
      local held = redis.call('HGET', h, old)
      if held then
        redis.call('HDEL', h, old)
        local minus = neg(held)
        if minus then redis.call('INCRBY', t, minus) end
      end
    end
    redis.call('ZREMRANGEBYSCORE', z, '-inf', '(' .. start)
  end
  for _, k in ipairs({z, h, t}) do redis.call('PEXPIRE', k, ttl_ms) end
  out[i] = redis.call('GET', t) or '0'
end
return out
"""
)


def _int(value: int) -> str:
    return str(int(value))


def _bint(value: int) -> bytes:
    return bulk(b"%d" % int(value))


def _bfloat(value: float) -> bytes:
    return bulk(repr(float(value)).encode())  # round-trips exactly through Redis' strtod


async def _nothing() -> None:
    return None


async def _ignore_reply(reply: Coroutine[Any, Any, Any]) -> None:
    await reply


_FRAMED_CACHE = 4096  # buckets whose framed keys are kept (windows roll over: the cache is cleared)


class RedisCounters:
    def __init__(self, url: str, *, prefix: str = "sluice:") -> None:
        self._redis = RespClient(url)
        self._prefix = prefix
        # Per bucket: its four keys in RESP framing, and its expiry. Every request sends the same
        # few buckets, so framing them once saves most of the cost of building a script call.
        self._framed: dict[Bucket, tuple[bytes, bytes]] = {}

    def _keys(self, bucket: Bucket) -> list[str]:
        return [f"{self._prefix}limit:{kind}:{bucket.key}" for kind in ("c", "r", "l", "s")]

    def _framed_keys(self, bucket: Bucket) -> tuple[bytes, bytes]:
        """(the four keys framed, the expiry in ms framed)."""
        found = self._framed.get(bucket)
        if found is None:
            if len(self._framed) >= _FRAMED_CACHE:
                self._framed.clear()
            keys = b"".join(bulk(key.encode()) for key in self._keys(bucket))
            found = self._framed[bucket] = (keys, bulk(self._expiry_ms(bucket).encode()))
        return found

    @staticmethod
    def _expiry_ms(bucket: Bucket) -> str:
        if bucket.expires_at <= 0:
            return "0"
        return str(int((bucket.expires_at + _GRACE_S) * 1000))

    async def reserve(
        self, request_id: str, items: Sequence[tuple[Bucket, int]], lease_s: float, now: float
    ) -> tuple[int | None, list[BucketState]]:
        if not items:
            return None, []
        keys: list[bytes] = []
        args: list[bytes] = [bulk(request_id.encode()), _bfloat(now), _bfloat(now + lease_s)]
        for bucket, amount in items:
            framed_keys, expiry = self._framed_keys(bucket)
            keys.append(framed_keys)
            args += [_bint(bucket.limit), _bint(amount), expiry]
        n = len(items)
        reply: list[Any] = await self._redis.eval_framed(_RESERVE, 4 * n, 3 + 3 * n, b"".join(keys + args))
        refused = int(reply[0])
        states = [
            BucketState(int(reply[3 * i + 1]), int(reply[3 * i + 2]), int(reply[3 * i + 3])) for i in range(len(items))
        ]
        return (None if refused < 0 else refused), states

    def settle(self, request_id: str, items: Sequence[tuple[Bucket, int]], now: float) -> Coroutine[Any, Any, None]:
        """Sends the settlement at once (it travels while the caller commits the ledger); the
        coroutine returned waits for Redis to have applied it."""
        if not items:
            return _nothing()
        keys: list[bytes] = []
        args: list[bytes] = [bulk(request_id.encode()), _bfloat(now), _bfloat(now - SETTLED_RETENTION_S)]
        for bucket, amount in items:
            framed_keys, expiry = self._framed_keys(bucket)
            keys.append(framed_keys)
            args += [_bint(amount), expiry]
        n = len(items)
        return _ignore_reply(self._redis.eval_framed_now(_SETTLE, 4 * n, 3 + 2 * n, b"".join(keys + args)))

    async def peek(self, buckets: Sequence[Bucket]) -> list[BucketState]:
        # One write, one round trip for all of them.
        rows: list[list[Any]] = await self._redis.pipeline(
            [("HMGET", self._keys(bucket)[0], "used", "reserved") for bucket in buckets]
        )
        return [BucketState(int(used or 0), int(reserved or 0)) for used, reserved in rows]

    async def seed(self, bucket: Bucket, used: int) -> bool:
        reply = await self._redis.eval(_SEED, self._keys(bucket), [_int(used), self._expiry_ms(bucket)])
        return int(reply) == 1

    async def add_spend(
        self, name: str, request_id: str, cost_pico: int, now: float, windows: Sequence[int]
    ) -> list[int]:
        """`SharedSpendRates.add_spend`: one script for every window, so replicas adding to one
        session at once each see the other's spend."""
        if not windows:
            return []
        digest = hashlib.sha256(name.encode()).hexdigest()[:32]
        keys: list[str] = []
        args = [request_id, repr(float(now)), _int(cost_pico)]
        for window in windows:
            keys += [f"{self._prefix}rate:{kind}:{int(window)}:{digest}" for kind in ("z", "h", "t")]
            args += [repr(float(now - window)), str(int((window + _GRACE_S) * 1000))]
        reply: list[Any] = await self._redis.eval(_SPEND_RATE, keys, args)
        return [int(total) for total in reply]

    async def close(self) -> None:
        await self._redis.close()

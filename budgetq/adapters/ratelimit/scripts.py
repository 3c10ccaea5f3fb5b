"""The Lua scripts the distributed rate limit (``budgetq.adapters.ratelimit.limiter``) runs in Redis.

Each runs atomically on the Redis server and reads its clock, so every worker on every host sees
one order of admissions and one time.
"""

from __future__ import annotations

# KEYS: log (zset id -> admitted ms), costs (hash id -> "r,i,o"), sums (hash dim -> total), learned (hash),
#       cached prefix (string: tokens of the request's prompt prefix the API holds in its cache, if any),
#       hold (string: until when, in Redis-clock ms, the API told us to send nothing)
# ARGV: window ms, limit r, limit i, limit o (-1: none), cost r, cost i, cost o, id, key ttl ms
# Returns {1, now} admitted; {0, wait ms} refused for now; {2, wait ms} held after a 429;
# {-1, dimension index} can never fit.
ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local hold = tonumber(redis.call('GET', KEYS[6]) or '0')
if hold > now then return {2, hold - now} end
local window = tonumber(ARGV[1])
local dims = {'r', 'i', 'o'}
local function parse(s)
  local r, i, o = string.match(s, '^(%-?%d+),(%-?%d+),(%-?%d+)$')
  return {tonumber(r), tonumber(i), tonumber(o)}
end
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - window)
for _, id in ipairs(expired) do
  local c = redis.call('HGET', KEYS[2], id)
  if c then
    local v = parse(c)
    for k = 1, 3 do redis.call('HINCRBY', KEYS[3], dims[k], 0 - v[k]) end
    redis.call('HDEL', KEYS[2], id)
  end
end
if #expired > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window) end
local cost = {tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])}
-- A prefix the API has cached will be read from the cache, and cache reads do not count as input.
local cached = tonumber(redis.call('GET', KEYS[5]) or '0')
cost[2] = math.max(0, cost[2] - cached)
local wait = 0
for k = 1, 3 do
  local limit = tonumber(ARGV[1 + k])
  local learned = redis.call('HGET', KEYS[4], dims[k])
  if learned then
    learned = tonumber(learned)
    if limit < 0 or learned < limit then limit = learned end
  end
  if limit >= 0 then
    if cost[k] > limit then return {-1, k} end
    local used = tonumber(redis.call('HGET', KEYS[3], dims[k]) or '0')
    local excess = used + cost[k] - limit
    if excess > 0 then
      local freed, until_ms = 0, window
      local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
      for j = 1, #entries, 2 do
        local c = redis.call('HGET', KEYS[2], entries[j])
        if c then freed = freed + parse(c)[k] end
        if freed >= excess then
          until_ms = tonumber(entries[j + 1]) + window - now + 1
          break
        end
      end
      if until_ms > wait then wait = until_ms end
    end
  end
end
if wait > 0 then return {0, wait} end
redis.call('ZADD', KEYS[1], now, ARGV[8])
redis.call('HSET', KEYS[2], ARGV[8], cost[1] .. ',' .. cost[2] .. ',' .. cost[3])
for k = 1, 3 do redis.call('HINCRBY', KEYS[3], dims[k], cost[k]) end
for k = 1, 3 do redis.call('PEXPIRE', KEYS[k], ARGV[9]) end
return {1, now}
"""

# KEYS: costs, sums. ARGV: id, cost r, cost i, cost o. Corrects an entry still in the window.
SETTLE = """
local c = redis.call('HGET', KEYS[1], ARGV[1])
if not c then return 0 end
local r, i, o = string.match(c, '^(%-?%d+),(%-?%d+),(%-?%d+)$')
local old = {tonumber(r), tonumber(i), tonumber(o)}
local new = {tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])}
local dims = {'r', 'i', 'o'}
for k = 1, 3 do redis.call('HINCRBY', KEYS[2], dims[k], new[k] - old[k]) end
redis.call('HSET', KEYS[1], ARGV[1], new[1] .. ',' .. new[2] .. ',' .. new[3])
return 1
"""

# KEYS: hold. ARGV: ms from now. Holds admission until then (or keeps a later hold); returns the ms left.
HOLD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local wanted = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if wanted > current then
  redis.call('SET', KEYS[1], wanted, 'PX', tonumber(ARGV[1]) + 1000)
  current = wanted
end
return current - now
"""

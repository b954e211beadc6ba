-- commit.lua: store one execution's result and its cache writes, atomically and at most once,
-- provided the cache still holds exactly what the caller read (compare-and-set).
--
-- The caller (broker/stores/redis_state.py) reads the result key and the cache hash, computes the
-- new cache in Python with sandbox.cache_rules (the one implementation of the cache limits), then
-- runs this script. Redis runs a script without interleaving any other command, so the checks and
-- the writes below are one atomic step.
--
-- Keys (layout: broker/keys.py):
--   KEYS[1]  P:{T}:result:E   string  read (GET); written (SET ... EX) when applied
--   KEYS[2]  P:{T}:cache:G    hash    read (HLEN, HGET); rewritten (DEL, HSET) and given an
--                                     absolute expiry (PEXPIREAT, ms) when applied
-- Arguments:
--   ARGV[1]  the result JSON          ARGV[2]  its time to live, seconds
--   ARGV[3]  n_seen: how many fields the caller read from the cache, then n_seen (field, raw
--            value) pairs; then n_new: how many fields the new cache has, then n_new (field, raw
--            value) pairs; then (only when n_new > 0) the new cache's expiry, ms since the epoch.
-- Returns:
--   {0, stored}  a result was already stored for this execution: nothing applied, here it is
--   {1}          the cache changed since the caller read it: nothing applied, read and retry
--   {2}          applied
local stored = redis.call('GET', KEYS[1])
if stored then
  return {0, stored}
end
local n_seen = tonumber(ARGV[3])
if redis.call('HLEN', KEYS[2]) ~= n_seen then
  return {1}
end
local i = 4
for _ = 1, n_seen do
  if redis.call('HGET', KEYS[2], ARGV[i]) ~= ARGV[i + 1] then
    return {1}
  end
  i = i + 2
end
local n_new = tonumber(ARGV[i])
i = i + 1
redis.call('DEL', KEYS[2])
if n_new > 0 then
  redis.call('HSET', KEYS[2], unpack(ARGV, i, i + 2 * n_new - 1))
  redis.call('PEXPIREAT', KEYS[2], ARGV[i + 2 * n_new])
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return {2}

-- counts.lua: task counts per (queue, state, priority); for queued groups, the oldest creation.
-- KEYS[1]: the namespace's depth key (routes the call).
-- ARGV: only the namespace.
-- Returns: triples {"queue|state|priority", count, oldest created_at as a string, or '' for a
--   state other than queued}.
-- Invariant: a queued group is listed while it holds a task (an empty one leaves K.groups
--   here, not on the hot path); the other states' counters are deleted when they reach zero.
local out = {}
for _, member in ipairs(redis.call('SMEMBERS', K.groups)) do
  local key = group_key(member)
  local n = redis.call('ZCARD', key)
  if n > 0 then
    local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    out[#out + 1] = {member, n, first[2]}
  else
    redis.call('SREM', K.groups, member)
  end
end
local counters = redis.call('HGETALL', K.counts)
for i = 1, #counters, 2 do
  local n = tonumber(counters[i + 1])
  if n > 0 then out[#out + 1] = {counters[i], n, ''} end
end
return out

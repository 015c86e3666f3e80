-- counts.lua: task counts per (queue, state, priority) and each group's oldest creation time.
-- KEYS[1]: the namespace's depth key (routes the call).
-- ARGV: only the namespace.
-- Returns: triples {"queue|state|priority", count, oldest created_at as a string}.
-- Invariant: a group is listed while it holds a task (group_leave drops empty ones).
local out = {}
for _, member in ipairs(redis.call('SMEMBERS', K.groups)) do
  local key = group_key(member)
  local n = redis.call('ZCARD', key)
  if n > 0 then
    local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    out[#out + 1] = {member, n, first[2]}
  end
end
return out

-- purge.lua: delete up to `limit` finished tasks of some terminal states.
-- KEYS[1]: the namespace's depth key (routes the call).
-- ARGV[2]: finished_before (exclusive); ARGV[3]: limit; then terminal state names.
-- Returns: how many tasks were deleted.
-- Invariant: the earliest finished go first (ties by id); every index entry and the
--   idempotency key of a deleted task go with it, so the key can be used again. Succeeded
--   tasks with a keep_result of their own are not in done_key: purge_kept.lua deletes them.
local cutoff, limit = ARGV[2], tonumber(ARGV[3])
local candidates = {}
for i = 4, #ARGV do
  local state = ARGV[i]
  local hits = redis.call('ZRANGEBYSCORE', done_key(state), '-inf', '(' .. cutoff,
    'WITHSCORES', 'LIMIT', 0, limit)
  for j = 1, #hits, 2 do
    candidates[#candidates + 1] = {id = hits[j], score = tonumber(hits[j + 1]), state = state}
  end
end
table.sort(candidates, before)
local n = math.min(limit, #candidates)
for i = 1, n do
  local c = candidates[i]
  redis.call('ZREM', done_key(c.state), c.id)
  forget(c.id, c.state)
end
flush()
return n

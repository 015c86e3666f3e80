-- delete.lua: delete finished tasks by id.
-- KEYS[1]: the namespace's depth key (routes the call).
-- ARGV[2..]: task ids.
-- Returns: one 1 (deleted) or 0 (unknown, or queued or running) per id, in order.
-- Invariant: every index entry and the idempotency key of a deleted task go with it, as
--   purge.lua does.
local out = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  local state = redis.call('HGET', task_key(id), 'state')
  if state == 'succeeded' or state == 'dead' or state == 'cancelled' then
    redis.call('ZREM', done_key(state), id)
    redis.call('ZREM', K.kept, id)
    forget(id, state)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
flush()
return out

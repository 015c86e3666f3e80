-- purge_kept.lua: delete up to `limit` succeeded tasks whose own retention ran out.
-- KEYS[1]: the namespace's depth key (routes the call).
-- ARGV[2]: now (exclusive: finished_at + keep_result < now); ARGV[3]: limit.
-- Returns: how many tasks were deleted.
-- Invariant: the earliest expiry goes first (ties by id); every index entry and the
--   idempotency key of a deleted task go with it, as purge.lua does (ADR 0035).
local hits = redis.call('ZRANGEBYSCORE', K.kept, '-inf', '(' .. ARGV[2], 'LIMIT', 0,
  tonumber(ARGV[3]))
for _, id in ipairs(hits) do
  redis.call('ZREM', K.kept, id)
  forget(id, 'succeeded')
end
flush()
return #hits

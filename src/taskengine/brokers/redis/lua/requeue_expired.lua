-- requeue_expired.lua: move running tasks whose lease ran out back to queued (or cancelled).
-- KEYS[1]: the namespace's depth key (routes the call).
-- ARGV[2]: now; ARGV[3]: limit; ARGV[4]: the history line's error text; ARGV[5]: its status
--   when requeued; ARGV[6]: its status when cancel was requested.
-- Returns: the ids moved, earliest expiry first (ties by id).
-- Invariant: only leases expired strictly before now are taken; each gets one history line
--   (the lost attempt) and its token is cleared, so the old holder can no longer settle.
local now, limit = ARGV[2], tonumber(ARGV[3])
local t = tonumber(now)
local ids = redis.call('ZRANGEBYSCORE', K.leases, '-inf', '(' .. now, 'LIMIT', 0, limit)
for _, id in ipairs(ids) do
  local key = task_key(id)
  local f = redis.call('HMGET', key, 'attempt', 'worker_id', 'started_at', 'cancel_requested',
    'queue', 'head', 'created_at')
  local cancel = f[4] == '1'
  local line = {attempt = tonumber(f[1]), finished_at = t, error = ARGV[4],
    duration = t - (tonumber(f[3]) or t), status = cancel and ARGV[6] or ARGV[5]}
  if f[2] then line.worker_id = f[2] end
  append_line(id, cmsgpack.pack(line))
  drop_lease(id)
  if cancel then
    redis.call('HSET', key, 'state', 'cancelled', 'finished_at', now, 'updated_at', now)
    regroup(id, 'running', 'cancelled')
    redis.call('ZADD', done_key('cancelled'), now, id)
  else
    redis.call('HSET', key, 'state', 'queued', 'run_at', now, 'updated_at', now)
    regroup(id, 'running', 'queued')
    schedule(id, f[5], now, f[7], f[6], now)
  end
end
if #ids > 0 then wake() end
flush()
return ids

-- requeue_expired.lua: move running tasks whose lease ran out back to queued (or cancelled,
--   or dead on their last attempt).
-- KEYS[1]: the namespace's depth key (routes the call).
-- ARGV[2]: now; ARGV[3]: limit; ARGV[4]: the history line's error text; ARGV[5]: its status
--   when requeued (also the dead result's); ARGV[6]: its status when cancel was requested;
--   ARGV[7]: the start of the dead result's error (model.records.expiry_error).
-- Returns: the ids moved, earliest expiry first (ties by id).
-- Invariant: only leases expired strictly before now are taken; each gets one history line
--   (the lost attempt) and its token is cleared, so the old holder can no longer settle; the
--   attempts never pass max_attempts; a task that ends dead or cancelled cancels its
--   dependents (release()).
local now, limit = ARGV[2], tonumber(ARGV[3])
local t = tonumber(now)
local ids = redis.call('ZRANGEBYSCORE', K.leases, '-inf', '(' .. now, 'LIMIT', 0, limit)
local ended = {}
for _, id in ipairs(ids) do
  local key = task_key(id)
  local f = redis.call('HMGET', key, 'attempt', 'worker_id', 'started_at', 'cancel_requested',
    'queue', 'head', 'created_at', 'max_attempts', 'type')
  hold(f[9], f[5], -1)
  local cancel = f[4] == '1'
  local duration = t - (tonumber(f[3]) or t)
  local line = {attempt = tonumber(f[1]), finished_at = t, error = ARGV[4],
    duration = duration, status = cancel and ARGV[6] or ARGV[5]}
  if f[2] then line.worker_id = f[2] end
  append_line(id, cmsgpack.pack(line))
  drop_lease(id)
  if cancel then
    redis.call('HSET', key, 'state', 'cancelled', 'finished_at', now, 'updated_at', now)
    regroup(id, 'running', 'cancelled')
    redis.call('ZADD', done_key('cancelled'), now, id)
    ended[#ended + 1] = {id, 'cancelled'}
  elseif f[8] and tonumber(f[1]) >= tonumber(f[8]) then  -- (absent: stored before 2026-12)
    local result = {task_id = id, status = ARGV[5], completed_at = t, duration = duration,
      error = ARGV[7] .. ' (' .. f[1] .. ' of ' .. f[8] .. '): ' .. ARGV[4]}
    if f[2] then result.worker_id = f[2] end
    redis.call('HSET', key, 'state', 'dead', 'finished_at', now, 'updated_at', now,
      'result', cmsgpack.pack(result), 'result_attempt', f[1])
    regroup(id, 'running', 'dead')
    redis.call('ZADD', done_key('dead'), now, id)
    ended[#ended + 1] = {id, 'dead'}
  else
    redis.call('HSET', key, 'state', 'queued', 'run_at', now, 'updated_at', now)
    regroup(id, 'running', 'queued')
    schedule(id, f[5], now, f[7], f[6], now)
  end
end
release(ended, now)  -- together: model.deps.blame
if #ids > 0 then wake() end
flush()
return ids

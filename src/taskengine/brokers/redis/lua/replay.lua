-- replay.lua: move dead or cancelled tasks back to queued, due now, attempt count reset.
-- KEYS[1]: the namespace's depth key (routes the call).
-- ARGV[2]: now; then task ids.
-- Returns: 'replayed', 'not_replayable' or 'not_found' per id, in input order.
-- A task with parents is gated again (gate(), model.deps): blocked while one is unfinished,
--   not replayable while one's failure would cancel it again.
-- Invariant: history and the last result are kept; the task is due at once and counted in
--   depth (replay is an operator's decision, so max_depth does not refuse it).
local now = ARGV[2]
local out, woken = {}, false
for i = 3, #ARGV do
  local id = ARGV[i]
  local key = task_key(id)
  local f = redis.call('HMGET', key, 'state', 'queue', 'head', 'created_at', 'deps', 'opf')
  local state, waiting = 'queued', {}
  if f[5] and (f[1] == 'dead' or f[1] == 'cancelled') then
    state, waiting = gate(split_ids(f[5]), f[6])
  end
  if not f[1] then
    out[#out + 1] = 'not_found'
  elseif (f[1] ~= 'dead' and f[1] ~= 'cancelled') or state == 'cancelled' then
    out[#out + 1] = 'not_replayable'
  else
    redis.call('HSET', key, 'state', state, 'attempt', 0, 'run_at', now, 'updated_at', now,
      'waiting', #waiting)
    redis.call('HDEL', key, 'finished_at', 'worker_id', 'cancel_requested')
    redis.call('ZREM', done_key(f[1]), id)
    regroup(id, f[1], state)
    if state == 'queued' then
      schedule(id, f[2], now, f[4], f[3], now)
      woken = true
    else
      for _, p in ipairs(waiting) do
        redis.call('SADD', waits_key(p), id)
        redis.call('HSET', task_key(p), 'waited', '1')  -- settle.lua releases only these
      end
    end
    out[#out + 1] = 'replayed'
  end
end
if woken then wake() end
flush()
return out

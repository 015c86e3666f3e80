-- cancel.lua: cancel queued and blocked tasks now; flag running ones for their worker's next extend.
-- KEYS[1]: the namespace's depth key (routes the call).
-- ARGV[2]: now; then pairs: task id, MessagePack TaskResult to store if it was queued.
-- Returns: 'cancelled', 'requested', 'finished' or 'not_found' per id, in input order.
-- Invariant: a queued task leaves its queue's indexes and the depth count in the same step; a
--   queued or blocked task cancelled cancels its dependents (release()) once every id named
--   was answered, so a dependent named in the same call is cancelled as asked.
local now = ARGV[2]
local out, woken, ended = {}, false, {}
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  local key = task_key(id)
  local f = redis.call('HMGET', key, 'state', 'attempt', 'queue')
  if not f[1] then
    out[#out + 1] = 'not_found'
  elseif f[1] == 'queued' or f[1] == 'blocked' then
    redis.call('HSET', key, 'state', 'cancelled', 'updated_at', now, 'finished_at', now,
      'result', ARGV[i + 1], 'result_attempt', f[2], 'waiting', 0)
    if f[1] == 'queued' then unschedule(id, f[3]) end
    regroup(id, f[1], 'cancelled')
    redis.call('ZADD', done_key('cancelled'), now, id)
    ended[#ended + 1] = {id, 'cancelled'}
    out[#out + 1] = 'cancelled'
  elseif f[1] == 'running' then
    redis.call('HSET', key, 'cancel_requested', '1', 'updated_at', now)
    out[#out + 1] = 'requested'
  else
    out[#out + 1] = 'finished'
  end
end
if release(ended, now) then woken = true end  -- the ids named as asked; then dependents
if woken then wake() end
flush()
return out

-- progress.lua: store the progress each running task's handler reported last.
-- KEYS[1]: the namespace's depth key (routes the call).
-- ARGV[2..]: triples: task id, token, MessagePack model.Progress.
-- Returns: 1 (stored) or 0 (token not current: settled, requeued, re-leased, unknown) per
--   triple, in input order.
-- Invariant: only the current token of a running task writes its `progress` field (fencing,
--   as in extend.lua); nothing else of the task changes.
local out = {}
for i = 2, #ARGV, 3 do
  local id, token = ARGV[i], ARGV[i + 1]
  local f = redis.call('HMGET', task_key(id), 'state', 'token')
  if f[1] ~= 'running' or f[2] ~= token then
    out[#out + 1] = 0
  else
    redis.call('HSET', task_key(id), 'progress', ARGV[i + 2])
    out[#out + 1] = 1
  end
end
return out

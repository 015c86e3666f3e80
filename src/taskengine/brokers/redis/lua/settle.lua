-- settle.lua: apply a mixed batch of outcomes, each fenced by its lease token.
-- KEYS[1]: the namespace's depth key (routes the call).
-- ARGV[2]: now; then groups of 7 fields per outcome: task id, token, new state,
--   refund ('1': the attempt is given back), run_at ('' = keep), MessagePack TaskResult
--   ('' = keep the stored one), MessagePack AttemptRecord line without its attempt ('' = none).
-- Returns: 1 (applied) or 0 (token not current) per outcome, in input order.
-- Invariant: an outcome applies only to a running task with that token, and clears the token,
--   so a second settle or a stale worker's settle is refused. Publishes a wake-up if a task
--   became queued and due.
local now = ARGV[2]
local W = 7
local out, woken = {}, false
for b = 3, #ARGV, W do
  local id, token, state = ARGV[b], ARGV[b + 1], ARGV[b + 2]
  local key = task_key(id)
  local f = redis.call('HMGET', key, 'state', 'token', 'attempt', 'queue', 'run_at', 'priority',
    'created_at', 'head', 'history', 'history_len')
  if f[1] ~= 'running' or f[2] ~= token then
    out[#out + 1] = 0
  else
    local attempt, queue, run_at = f[3], f[4], f[5]
    local fields = {'state', state, 'updated_at', now}
    local line = ARGV[b + 6]
    if line ~= '' then
      local entry = cmsgpack.unpack(line)
      entry.attempt = tonumber(attempt)
      local n = #fields
      fields[n + 1], fields[n + 2] = 'history', (f[9] or '') .. cmsgpack.pack(entry)
      fields[n + 3], fields[n + 4] = 'history_len', (tonumber(f[10]) or 0) + 1
    end
    if ARGV[b + 5] ~= '' then
      local n = #fields
      fields[n + 1], fields[n + 2], fields[n + 3], fields[n + 4] =
        'result', ARGV[b + 5], 'result_attempt', attempt
    end
    if ARGV[b + 3] == '1' then
      local n = #fields
      fields[n + 1], fields[n + 2] = 'attempt', tonumber(attempt) - 1
    end
    if ARGV[b + 4] ~= '' then
      run_at = ARGV[b + 4]
      local n = #fields
      fields[n + 1], fields[n + 2] = 'run_at', run_at
    end
    if state ~= 'queued' then
      local n = #fields
      fields[n + 1], fields[n + 2] = 'finished_at', now
    end
    redis.call('HSET', key, unpack(fields))
    drop_lease(id)
    move_group(id, queue, f[6], f[7], 'running', state)
    if state == 'queued' then
      schedule(id, queue, run_at, f[8], now)
      if tonumber(run_at) <= tonumber(now) then woken = true end
    else
      redis.call('ZADD', done_key(state), now, id)
    end
    out[#out + 1] = 1
  end
end
if woken then wake() end
flush()
return out

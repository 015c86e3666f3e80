-- settle.lua: apply a mixed batch of outcomes, each fenced by its lease token.
-- KEYS[1]: the namespace's depth key (routes the call).
-- ARGV[2]: now; ARGV[3]: the batch, one MessagePack array of strings (codec.settle_batch), 9
--   per outcome: task id, token, new state, refund ('1': the attempt is given back), run_at
--   ('' = keep), MessagePack TaskResult ('' = keep the stored one), MessagePack AttemptRecord
--   line without its attempt ('' = none), then the TaskResult and line of the cancel that
--   replaces this outcome if the task has a cancel request ('' = the outcome stands:
--   succeeded, dead, cancelled). One packed value: the server parses one argument, not nine
--   per outcome.
-- Returns: 1 (applied) or 0 (token not current) per outcome, in input order.
-- Invariant: an outcome applies only to a running task with that token, and clears the token,
--   so a second settle or a stale worker's settle is refused (the hash is the fence: the
--   sorted-set writes of the batch are gathered and sent once per key at the end). A task
--   with a cancel request is never queued again. Publishes a wake-up if a task became queued
--   and due. A task that succeeds with keep_result 0 is deleted (its record is read by
--   nobody); with another keep_result it goes to K.kept by its expiry instead of done_key
--   (ADR 0035). A task that ends releases or cancels its dependents (release(), once for the
--   batch; only tasks marked `waited` have any), before it is deleted. A task leaves
--   K.running; if its type or queue has a max_concurrency, a wake-up is published (a slot is
--   free, ADR 0038).
-- The line with its attempt number set. codec.settle_batch packs it as a map whose first key
-- is attempt, 0 (one byte): those bytes are replaced, so the line is not decoded here.
local LINE_HEAD = '\135\167attempt\0'
local function with_attempt(line, attempt)
  if string.sub(line, 1, 10) == LINE_HEAD then
    return '\135\167attempt' .. cmsgpack.pack(tonumber(attempt)) .. string.sub(line, 11)
  end
  local entry = cmsgpack.unpack(line)
  entry.attempt = tonumber(attempt)
  return cmsgpack.pack(entry)
end

local now = ARGV[2]
local A = cmsgpack.unpack(ARGV[3])
local W = 9
local out, woken, ended, forgotten = {}, false, {}, {}
local limited = redis.call('EXISTS', K.limits) == 1
local unleased, finished = {}, {}  -- ids leaving K.leases; per done_key, its ZADD arguments
for b = 1, #A, W do
  local id, token, state = A[b], A[b + 1], A[b + 2]
  local key = task_key(id)
  local f = redis.call('HMGET', key, 'state', 'token', 'attempt', 'queue', 'run_at', 'priority',
    'created_at', 'head', 'history', 'history_len', 'cancel_requested', 'keep_result', 'type',
    'waited')
  if f[1] ~= 'running' or f[2] ~= token then
    out[#out + 1] = 0
  else
    local attempt, queue, run_at = f[3], f[4], f[5]
    local refund, new_run_at, result, line = A[b + 3], A[b + 4], A[b + 5], A[b + 6]
    if f[11] == '1' and A[b + 7] ~= '' then  -- the cancel asked while it ran is honoured
      state, refund, new_run_at, result, line = 'cancelled', '0', '', A[b + 7], A[b + 8]
    end
    hold(f[13], queue, -1)
    if limited and not woken and concurrency_limited(f[13], queue) then woken = true end
    local keep = state == 'succeeded' and f[12] and tonumber(f[12])
    local waited = f[14] == '1'  -- it has had blocked dependents (enqueue.lua, replay.lua)
    unleased[#unleased + 1] = id
    if keep == 0 then
      if waited then ended[#ended + 1] = {id, state} end
      forgotten[#forgotten + 1] = id  -- once its dependents are released
    else
      local fields = {'state', state, 'updated_at', now}
      if line ~= '' then
        local n = #fields
        fields[n + 1], fields[n + 2] = 'history', (f[9] or '') .. with_attempt(line, attempt)
        fields[n + 3], fields[n + 4] = 'history_len', (tonumber(f[10]) or 0) + 1
      end
      if result ~= '' then
        local n = #fields
        fields[n + 1], fields[n + 2], fields[n + 3], fields[n + 4] =
          'result', result, 'result_attempt', attempt
      end
      if refund == '1' then
        local n = #fields
        fields[n + 1], fields[n + 2] = 'attempt', tonumber(attempt) - 1
      end
      if new_run_at ~= '' then
        run_at = new_run_at
        local n = #fields
        fields[n + 1], fields[n + 2] = 'run_at', run_at
      end
      if state ~= 'queued' then
        local n = #fields
        fields[n + 1], fields[n + 2] = 'finished_at', now
      end
      redis.call('HSET', key, unpack(fields))
      redis.call('HDEL', key, 'lease_expires_at', 'cancel_requested', 'token')
      move_group(id, queue, f[6], f[7], 'running', state)
      if state == 'queued' then
        if schedule(id, queue, run_at, f[7], f[8], now) then woken = true end
      elseif keep then
        redis.call('ZADD', K.kept, string.format('%.17g', tonumber(now) + keep), id)
      else
        local args = finished[state]
        if not args then
          args = {}
          finished[state] = args
        end
        args[#args + 1] = now
        args[#args + 1] = id
      end
      if state ~= 'queued' and waited then ended[#ended + 1] = {id, state} end
    end
    out[#out + 1] = 1
  end
end
call_runs('ZREM', K.leases, unleased)
for state, args in pairs(finished) do call_runs('ZADD', done_key(state), args) end
if release(ended, now) then woken = true end  -- together: model.deps.blame
for _, id in ipairs(forgotten) do forget(id, 'running') end
if woken then wake() end
flush()
return out

-- reserve.lua: claim up to `limit` due tasks of unpaused queues, lowest (order key, id) first.
-- KEYS[1]: the namespace's depth key (routes the call).
-- ARGV[2]: worker id; ARGV[3]: limit; ARGV[4]: now; ARGV[5]: lease_for (seconds);
-- ARGV[6]: token base (random; token i is base .. ':' .. i); ARGV[7]: the most newly due tasks
--   moved to the ready set per queue (at least `limit`); ARGV[8]: number of queues given
--   (-1: every known queue); then that many queue names; then '1' if the server's TIME is
--   this call's now (server_clock: readiness, the stamps, the lease and the limits' buckets
--   follow it; ARGV[4] is ignored), else '0'. The lease expires at now + lease_for.
-- Returns: per claimed task, in claim order, the values of its hash fields task, attempt (the
--   new one), run_at, finished_at, result, result_attempt, history, history_len, priority,
--   created_at and progress (codec.decode_claim reads them); the claim's own fields are known to the caller: state
--   running, started_at = updated_at = now, worker_id, lease_expires_at, token base .. ':' .. i.
--   The last two elements are not claims: this call's now (a number string), then the seconds
--   until an empty rate-limit bucket gets its next token, or '' (ADR 0038).
-- Invariant: a task is claimed only while queued and due (the later of run_at and created_at
--   <= now), so never twice and never early. Readiness is evaluated here: due ids move from
--   sched_key(q) (scored by due time) to ready_key(q) scored by due - head (tasks due at once
--   were put there by `schedule`), earliest due first and at most ARGV[7] per queue per call,
--   so a call's cost stays bounded however many tasks fell due at once; the rest move in
--   later calls. Every call moves at least `limit` of them, so it returns due work while some
--   wait; those still waiting are due no earlier than the ones moved, so only tasks that
--   became due within STARVATION_BOUND of each other may be taken out of tier order during
--   the catch-up. A ready task not due by this call's now (queued as due by a caller whose
--   clock was ahead) goes back to sched_key(q).
-- Limits (ADR 0038, model/limits.py, brokers/limits.py Gate): with K.limits non-empty, a task
--   is claimed only if its type's and its queue's limits have room (running count in
--   K.running below max_concurrency, a whole token in the bucket in K.buckets); a task refused
--   stays in its ready set untouched, and the candidates read per queue grow to LIMITED_SCAN x
--   limit so tasks behind a full scope are still claimed.
local worker, limit, now, base = ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[6]
local step, nq = tonumber(ARGV[7]), tonumber(ARGV[8])
local server_clock = ARGV[9 + math.max(nq, 0)] == '1'
if server_clock then now = server_now() end
local expires = string.format('%.17g', tonumber(now) + tonumber(ARGV[5]))
local queues = {}
if nq < 0 then
  queues = redis.call('SMEMBERS', K.queues)
else
  local given = {}
  for i = 1, nq do
    local q = ARGV[8 + i]
    if not given[q] then
      given[q] = true
      queues[#queues + 1] = q
    end
  end
end

-- Move up to `step` due ids of queue q, earliest due first, to its ready set.
local function promote(q)
  local due = redis.call('ZRANGEBYSCORE', sched_key(q), '-inf', now, 'WITHSCORES', 'LIMIT', 0,
    step)
  for j = 1, #due, 2 do
    local head = redis.call('HGET', task_key(due[j]), 'head')
    redis.call('ZADD', ready_key(q), tonumber(due[j + 1]) - tonumber(head), due[j])
  end
  -- the ids moved are the set's first ones: its lowest scores, ties by id
  if #due > 0 then redis.call('ZREMRANGEBYRANK', sched_key(q), 0, #due / 2 - 1) end
end

-- The limits' state for this call: slots left and tokens per "scope|name". The buckets'
-- clock is this call's now: the server's TIME with server_clock, so processes never gain
-- tokens from each other's stamps; else the caller's (a test's fake clock).
local LIMITED_SCAN = 4
local bucket_now = tonumber(now)
local lim, slots, tokens = {}, {}, {}
local limited = false
local stored = redis.call('HGETALL', K.limits)
for j = 1, #stored, 2 do
  limited = true
  local c, r, b = string.match(stored[j + 1], '^([^|]*)|([^|]*)|([^|]*)$')
  local rate = tonumber(r)
  local l = {rate = rate}
  if c ~= '' then slots[stored[j]] = tonumber(c) - (tonumber(redis.call('HGET', K.running,
    stored[j])) or 0) end
  if rate then
    l.cap = tonumber(b) or math.max(1, math.floor(rate / 10))
    local bucket = redis.call('HGET', K.buckets, stored[j])
    local have, stamp = l.cap, bucket_now
    if bucket then
      local x, y = string.match(bucket, '^([^|]*)|([^|]*)$')
      have, stamp = tonumber(x), tonumber(y)
    end
    tokens[stored[j]] = math.min(l.cap, have + math.max(0, bucket_now - stamp) * rate)
  end
  lim[stored[j]] = l
end
local wait = nil
local function note_wait(member)
  local w = (1 - tokens[member]) / lim[member].rate
  if wait == nil or w < wait then wait = w end
end
-- Take a slot and a token of both scopes of a task if both have room (brokers/limits.py Gate).
local function admit(type_name, queue)
  local a, b = 'type|' .. type_name, 'queue|' .. queue
  if (slots[a] or 1) < 1 or (slots[b] or 1) < 1 then return false end
  for _, m in ipairs({a, b}) do
    if tokens[m] and tokens[m] < 1 then
      note_wait(m)
      return false
    end
  end
  for _, m in ipairs({a, b}) do
    if slots[m] then slots[m] = slots[m] - 1 end
    if tokens[m] then tokens[m] = tokens[m] - 1 end
  end
  return true
end

local scan = limited and limit * LIMITED_SCAN or limit
local candidates, sources = {}, 0
for _, q in ipairs(queues) do
  local qm = 'queue|' .. q
  if redis.call('SISMEMBER', K.paused, q) == 0 then
    promote(q)
    local head = {}
    if (slots[qm] or 1) >= 1 and (tokens[qm] or 1) >= 1 then
      head = redis.call('ZRANGE', ready_key(q), 0, scan - 1, 'WITHSCORES')
    end
    for j = 1, #head, 2 do
      candidates[#candidates + 1] = {id = head[j], score = tonumber(head[j + 1]), queue = q}
    end
    if #head > 0 then sources = sources + 1 end
    if nq < 0 and #head == 0 and redis.call('EXISTS', sched_key(q)) == 0 then
      remove_member(K.queues, q)  -- re-added by whatever queues a task there again
    end
  end
end
if sources > 1 then table.sort(candidates, before) end  -- one queue's ZRANGE is in order

-- A candidate queued as due by a caller whose clock was ahead of this call's may not be due
-- yet: it goes back to sched_key, to be moved again when due (as the other brokers wait).
local out, seen, later = {}, {}, {}
local leased, unqueued = {}, {}  -- K.leases's ZADD arguments; per queued group, its ids
local t = tonumber(now)
for i = 1, #candidates do
  if #out == limit then break end
  local c = candidates[i]
  local key = task_key(c.id)
  seen[c.queue] = (seen[c.queue] or 0) + 1
  local f = redis.call('HMGET', key, 'task', 'attempt', 'run_at', 'finished_at', 'result',
    'result_attempt', 'history', 'history_len', 'priority', 'created_at', 'progress', 'type')
  local type_name = f[12]
  f[12] = nil
  local due = math.max(tonumber(f[3]), tonumber(f[10]))
  if due > t then
    later[#later + 1] = {queue = c.queue, id = c.id, due = due}
    if limited then redis.call('ZREM', ready_key(c.queue), c.id) end
  elseif limited and not admit(type_name, c.queue) then
    -- refused by a limit: stays queued in its ready set, attempt untouched
  else
    if limited then redis.call('ZREM', ready_key(c.queue), c.id) end
    hold(type_name, c.queue, 1)
    f[2] = tonumber(f[2]) + 1
    redis.call('HSET', key, 'attempt', f[2], 'state', 'running', 'updated_at', now,
      'started_at', now, 'worker_id', worker, 'lease_expires_at', expires,
      'token', base .. ':' .. (#out + 1))
    leased[#leased + 1] = expires
    leased[#leased + 1] = c.id
    -- move_group(c.id, c.queue, f[9], f[10], 'queued', 'running'), its ZREM gathered per group
    local member = group_name(c.queue, 'queued', f[9])
    local ids = unqueued[member]
    if not ids then
      ids = {}
      unqueued[member] = ids
    end
    ids[#ids + 1] = c.id
    add_count(group_name(c.queue, 'running', f[9]), 1)
    out[#out + 1] = f
  end
end
-- The sorted-set writes of the claims, one call per key (a batch names a few groups).
call_runs('ZADD', K.leases, leased)
for member, ids in pairs(unqueued) do call_runs('ZREM', group_key(member), ids) end
-- Unlimited, what was looked at in each queue is a prefix of its ready set, in the set's own
-- order (limited, each was removed by itself above: a refused task stays).
if not limited then
  for q, k in pairs(seen) do redis.call('ZREMRANGEBYRANK', ready_key(q), 0, k - 1) end
end
for _, c in ipairs(later) do redis.call('ZADD', sched_key(c.queue), c.due, c.id) end
depth_delta = depth_delta - #out
flush()
-- Every bucket after this call; a bucket left empty says when its next token is due.
for m, have in pairs(tokens) do
  redis.call('HSET', K.buckets, m,
    string.format('%.17g', have) .. '|' .. string.format('%.17g', bucket_now))
  if have < 1 and (slots[m] or 1) >= 1 then note_wait(m) end
end
out[#out + 1] = now
out[#out + 1] = wait and string.format('%.17g', wait) or ''
return out

-- enqueue.lua: store a batch of tasks as queued, all or nothing.
-- KEYS[1]: the namespace's depth key (routes the call; other keys come from the preamble).
-- ARGV[2]: now; ARGV[3]: max_depth; ARGV[4]: the batch, one MessagePack array of strings
--   (codec.enqueue_batch), 15 per task: id, '=' .. idempotency key ('' = none), queue,
--   run_at, head start, priority, created_at, attempt, type, MessagePack Task blob,
--   max_attempts, keep_result ('' = none: the global retention; stored only when set),
--   parent ids joined by ',' ('' = none), on_parent_failure ('' = cancel), workflow id
--   ('' = none). One packed value: the server parses one argument, not fifteen per task.
-- ARGV[5]: the unique locks (ADR 0038), one MessagePack array of 4 strings per lock: the
--   task's 0-based place in the batch, the lock key, until ('' = none), the holder states
--   ('' = none); '' when the batch has none. ARGV[6]: '1' if the server's TIME is this call's
--   now (server_clock: ARGV[2] is then ignored), else '0'.
-- As received (model.records.as_received), by this call's now: a task created after now is
--   stored as created now and, if it was to run at once, due now; so a producer whose
--   estimate of the server's time runs ahead never makes a task due in the server's future.
-- Returns: {'ok', i1, id1, i2, id2, ...}: only the duplicates, each as its 0-based place in the
--   batch and the id of the stored task it names (every other task was stored under its own
--   id: a reply of two values per task cost both sides more than the script's work), or
--   {'full', depth, fresh} when the fresh tasks would pass max_depth, or {'unknown', id,
--   parent1, ...} when a task's parents are neither stored nor earlier in the batch (in
--   both cases nothing is stored).
-- A task with parents starts queued, blocked or cancelled as gate() says (model.deps).
-- Invariant: a task whose id or idempotency key is stored, or earlier in the batch, is a
--   duplicate answered with the first task's id; depth counts queued tasks exactly. So is a
--   task whose unique lock is held (K.ulocks: key -> "holder|until|states", holding while
--   now < until, or while the holder's state is among states; model.unique.lock_holds) or
--   taken earlier in the batch; a task stored takes its lock.
local now, max_depth = ARGV[2], tonumber(ARGV[3])
if ARGV[6] == '1' then now = server_now() end
local nowv = tonumber(now)
local A = cmsgpack.unpack(ARGV[4])
local W = 15
local n = #A / W
-- Which ids are stored: one ZMSCORE on the index of every id (a task's hash and its entry
-- there are written and deleted together) per run of ids, not one EXISTS per task.
local RUN = 1000
local stored = {}
for first = 0, n - 1, RUN do
  local ids = {}
  for i = first, math.min(first + RUN, n) - 1 do ids[#ids + 1] = A[1 + i * W] end
  local scores = redis.call('ZMSCORE', K.all, unpack(ids))
  for j = 1, #ids do
    if scores[j] then stored[ids[j]] = true end
  end
end
local locks = {}
if ARGV[5] ~= '' then
  local U = cmsgpack.unpack(ARGV[5])
  for j = 1, #U, 4 do
    locks[tonumber(U[j])] = {key = U[j + 1], till = U[j + 2], states = U[j + 3]}
  end
end
-- The holder of a stored unique lock that still holds, or nil.
local function lock_holder(key)
  local v = redis.call('HGET', K.ulocks, key)
  if not v then return nil end
  local holder, till, states = string.match(v, '^([^|]*)|([^|]*)|([^|]*)$')
  local state = redis.call('HGET', task_key(holder), 'state')
  if not state then return nil end
  if till ~= '' then
    if tonumber(now) < tonumber(till) then return holder end
    return nil
  end
  for s in string.gmatch(states, '[^,]+') do
    if s == state then return holder end
  end
  return nil
end
local out, fresh, seen, batch_keys, batch_locks, taken = {'ok'}, {}, {}, {}, {}, {}
local unknown = nil
for i = 0, n - 1 do
  local b = 1 + i * W
  local id, ikey = A[b], string.sub(A[b + 1], 2)
  local has_key = A[b + 1] ~= ''
  local existing = nil
  if seen[id] or stored[id] then
    existing = id
  elseif has_key then
    existing = batch_keys[ikey] or redis.call('HGET', K.ikeys, ikey)
  end
  local lock = locks[i]
  if not existing and lock then
    existing = batch_locks[lock.key] or lock_holder(lock.key)
    if not existing then
      batch_locks[lock.key] = id
      taken[#taken + 1] = {lock = lock, id = id}
    end
  end
  if existing then
    out[#out + 1] = i
    out[#out + 1] = existing
  else
    local missing = {}
    for _, parent in ipairs(split_ids(A[b + 12])) do
      if not seen[parent] and redis.call('EXISTS', task_key(parent)) == 0 then
        missing[#missing + 1] = parent
      end
    end
    if #missing > 0 and not unknown then unknown = {'unknown', id, unpack(missing)} end
    seen[id] = true
    if has_key then batch_keys[ikey] = id end
    fresh[#fresh + 1] = b
  end
end
local depth = tonumber(redis.call('GET', K.depth) or '0')
if depth + #fresh > max_depth then return {'full', depth, #fresh} end
if unknown then return unknown end
for _, t in ipairs(taken) do
  redis.call('HSET', K.ulocks, t.lock.key, t.id .. '|' .. t.lock.till .. '|' .. t.lock.states)
  redis.call('HSET', task_key(t.id), 'ulock', t.lock.key)  -- forget() frees it
end
-- The sorted-set adds of the batch, gathered per key and sent RUN members a call: a
-- batch names a few keys (the id index, each queue's ready set, each group), so the server
-- runs a few calls, not three per task.
local zadds, zkeys = {}, {}
local function zadd_later(key, score, member)
  local args = zadds[key]
  if not args then
    args = {}
    zadds[key] = args
    zkeys[#zkeys + 1] = key
  end
  args[#args + 1] = score
  args[#args + 1] = member
end
for _, b in ipairs(fresh) do
  local id, ikey, queue, run_at = A[b], A[b + 1], A[b + 2], A[b + 3]
  local has_key = ikey ~= ''
  ikey = string.sub(ikey, 2)
  local priority, created_at, head = A[b + 5], A[b + 6], A[b + 4]
  if tonumber(created_at) > nowv then  -- as received (header)
    if tonumber(run_at) <= tonumber(created_at) and tonumber(run_at) > nowv then run_at = now end
    created_at = now
  end
  redis.call('HSET', task_key(id), 'task', A[b + 9], 'state', 'queued',
    'attempt', A[b + 7], 'run_at', run_at, 'updated_at', now, 'queue', queue,
    'priority', priority, 'head', head, 'created_at', created_at, 'type', A[b + 8],
    'max_attempts', A[b + 10])
  if A[b + 11] ~= '' then redis.call('HSET', task_key(id), 'keep_result', A[b + 11]) end
  if has_key then
    redis.call('HSET', K.ikeys, ikey, id)
    redis.call('HSET', task_key(id), 'idempotency_key', ikey)
  end
  zadd_later(K.all, 0, id)
  local deps, opf, workflow = A[b + 12], A[b + 13], A[b + 14]
  if workflow ~= '' then
    redis.call('HSET', task_key(id), 'workflow', workflow)
    zadd_later(workflow_key(workflow), 0, id)
  end
  if deps == '' then
    -- what group_join(queue, 'queued', ...) and schedule(...) of _common.lua do, gathered
    local member = group_name(queue, 'queued', priority)
    zadd_later(group_key(member), created_at, id)
    add_once(K.groups, member)
    add_once(K.queues, queue)
    depth_delta = depth_delta + 1
    local due = math.max(tonumber(run_at), tonumber(created_at))
    if due <= nowv then
      zadd_later(ready_key(queue), due - tonumber(head), id)
    else
      zadd_later(sched_key(queue), due, id)
    end
  else
    -- a task with parents: gate() reads their states (hashes of this batch are written)
    redis.call('HSET', task_key(id), 'deps', deps)
    if opf ~= '' then redis.call('HSET', task_key(id), 'opf', opf) end
    local state, waiting, parent, pstate = gate(split_ids(deps), opf)
    group_join(queue, state, priority, id, created_at)
    if state == 'queued' then
      schedule(id, queue, run_at, created_at, head, now)
    elseif state == 'blocked' then
      redis.call('HSET', task_key(id), 'state', 'blocked', 'waiting', #waiting)
      for _, p in ipairs(waiting) do
        redis.call('SADD', waits_key(p), id)
        redis.call('HSET', task_key(p), 'waited', '1')  -- settle.lua releases only these
      end
    else
      redis.call('HSET', task_key(id), 'state', 'cancelled', 'finished_at', now,
        'result', parent_failed(id, parent, pstate, now), 'result_attempt', A[b + 7])
      redis.call('ZADD', done_key('cancelled'), now, id)
    end
  end
end
for _, key in ipairs(zkeys) do
  local args = zadds[key]
  for first = 1, #args, 2 * RUN do
    redis.call('ZADD', key, unpack(args, first, math.min(first + 2 * RUN - 1, #args)))
  end
end
if #fresh > 0 then wake() end
flush()
return out

-- enqueue.lua: store a batch of tasks as queued, all or nothing.
-- KEYS[1]: the namespace's depth key (routes the call; other keys come from the preamble).
-- ARGV[2]: now; ARGV[3]: max_depth; ARGV[4]: n; then n groups of 14 fields, per task:
--   id, '=' .. idempotency key ('' = none), queue, run_at, head start, priority, created_at,
--   attempt, type, MessagePack Task blob, max_attempts, parent ids joined by ',' ('' = none),
--   on_parent_failure ('' = cancel), workflow id ('' = none).
-- Returns: {'ok', id1, created1, id2, created2, ...} in input order (created: 1 or 0), or
--   {'full', depth, fresh} when the fresh tasks would pass max_depth, or {'unknown', id,
--   parent1, ...} when a task's parents are neither stored nor earlier in the batch (in
--   both cases nothing is stored).
-- A task with parents starts queued, blocked or cancelled as gate() says (model.deps).
-- Invariant: a task whose id or idempotency key is stored, or earlier in the batch, is a
--   duplicate answered with the first task's id; depth counts queued tasks exactly.
local now, max_depth, n = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local W = 14
local out, fresh, seen, batch_keys, unknown = {'ok'}, {}, {}, {}, nil
for i = 0, n - 1 do
  local b = 5 + i * W
  local id, ikey = ARGV[b], string.sub(ARGV[b + 1], 2)
  local has_key = ARGV[b + 1] ~= ''
  local existing = nil
  if seen[id] or redis.call('EXISTS', task_key(id)) == 1 then
    existing = id
  elseif has_key then
    existing = batch_keys[ikey] or redis.call('HGET', K.ikeys, ikey)
  end
  if existing then
    out[#out + 1] = existing
    out[#out + 1] = 0
  else
    local missing = {}
    for _, parent in ipairs(split_ids(ARGV[b + 11])) do
      if not seen[parent] and redis.call('EXISTS', task_key(parent)) == 0 then
        missing[#missing + 1] = parent
      end
    end
    if #missing > 0 and not unknown then unknown = {'unknown', id, unpack(missing)} end
    seen[id] = true
    if has_key then batch_keys[ikey] = id end
    fresh[#fresh + 1] = b
    out[#out + 1] = id
    out[#out + 1] = 1
  end
end
local depth = tonumber(redis.call('GET', K.depth) or '0')
if depth + #fresh > max_depth then return {'full', depth, #fresh} end
if unknown then return unknown end
for _, b in ipairs(fresh) do
  local id, ikey, queue, run_at = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local has_key = ikey ~= ''
  ikey = string.sub(ikey, 2)
  local priority, created_at = ARGV[b + 5], ARGV[b + 6]
  redis.call('HSET', task_key(id), 'task', ARGV[b + 9], 'state', 'queued',
    'attempt', ARGV[b + 7], 'run_at', run_at, 'updated_at', now, 'queue', queue,
    'priority', priority, 'head', ARGV[b + 4], 'created_at', created_at, 'type', ARGV[b + 8],
    'max_attempts', ARGV[b + 10])
  if has_key then
    redis.call('HSET', K.ikeys, ikey, id)
    redis.call('HSET', task_key(id), 'idempotency_key', ikey)
  end
  redis.call('ZADD', K.all, 0, id)
  local deps, opf, workflow = ARGV[b + 11], ARGV[b + 12], ARGV[b + 13]
  if workflow ~= '' then
    redis.call('HSET', task_key(id), 'workflow', workflow)
    redis.call('ZADD', workflow_key(workflow), 0, id)
  end
  local state, waiting, parent, pstate = 'queued', {}, nil, nil
  if deps ~= '' then
    redis.call('HSET', task_key(id), 'deps', deps)
    if opf ~= '' then redis.call('HSET', task_key(id), 'opf', opf) end
    state, waiting, parent, pstate = gate(split_ids(deps), opf)
  end
  group_join(queue, state, priority, id, created_at)
  if state == 'queued' then
    schedule(id, queue, run_at, created_at, ARGV[b + 4], now)
  elseif state == 'blocked' then
    redis.call('HSET', task_key(id), 'state', 'blocked', 'waiting', #waiting)
    for _, p in ipairs(waiting) do redis.call('SADD', waits_key(p), id) end
  else
    redis.call('HSET', task_key(id), 'state', 'cancelled', 'finished_at', now,
      'result', parent_failed(id, parent, pstate, now), 'result_attempt', ARGV[b + 7])
    redis.call('ZADD', done_key('cancelled'), now, id)
  end
end
if #fresh > 0 then wake() end
flush()
return out

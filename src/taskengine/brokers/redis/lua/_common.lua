-- _common.lua: helpers shared by every script (prepended after the generated key preamble).
-- KEYS: none of its own. ARGV: none of its own (NS is ARGV[1], read by the preamble).
-- Returns: nothing; defines local functions.
-- Invariant kept by their callers: a task id sits in exactly the indexes its state implies:
--   blocked -> none (it waits in its parents' waits_key sets); counted in K.counts
--   queued  -> sched_key(queue) or ready_key(queue), counted in K.depth
--   running -> K.leases
--   succeeded/dead/cancelled -> done_key(state); but succeeded with a keep_result of its
--     own -> K.kept, by finished_at + keep_result (ADR 0035)
--   always  -> K.all (and workflow_key(w) in a workflow); queued:
--              group_key(queue|queued|priority), else a count in K.counts
--   cancel_requested is set only while running and cleared when the task leaves running.
-- K.running counts, per "type|name" and "queue|name", the tasks in running (ADR 0038).
-- Counter changes (K.depth, K.counts, K.running) are summed in Lua and written once by flush(), which
-- every script that moves tasks calls before it returns: a batch moves many tasks between the
-- same few groups.
-- Numbers read from Redis stay strings where they are only copied, so no precision is lost;
-- Lua's `..` formats numbers with 14 digits, so computed numbers are never concatenated.

-- Byte-wise a < b: Lua compares strings by the server's locale (strcoll), Redis by bytes.
local function id_less(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- Order of candidates {score = number, id = string}: (score, id), as a sorted set orders them.
local function before(x, y)
  if x.score ~= y.score then return x.score < y.score end
  return id_less(x.id, y.id)
end

-- The server's clock (TIME) as a number string formatted to keep every digit: the "now" of a
-- call made with server_clock, read inside the script so that no process's estimate of the
-- server's time decides readiness (ADR 0006).
local function server_now()
  local tm = redis.call('TIME')
  return string.format('%.17g', tonumber(tm[1]) + tonumber(tm[2]) / 1000000)
end

-- SADD `member` to `set` once per script call: a batch names the same few queues and groups.
local added = {}
local function add_once(set, member)
  local seen = added[set]
  if not seen then
    seen = {}
    added[set] = seen
  end
  if not seen[member] then
    seen[member] = true
    redis.call('SADD', set, member)
  end
end

-- SREM `member` from `set`, so that a later add_once in the same call adds it again.
local function remove_member(set, member)
  if added[set] then added[set][member] = nil end
  redis.call('SREM', set, member)
end

-- redis.call(command, key, ...args) in runs of at most 2000 arguments (Lua's unpack has a
-- stack limit); `args` holds whole members (pairs for ZADD, so the run length is even).
local function call_runs(command, key, args)
  for first = 1, #args, 2000 do
    redis.call(command, key, unpack(args, first, math.min(first + 1999, #args)))
  end
end

local depth_delta, count_deltas, running_deltas = 0, {}, {}

-- Count a task of (type, queue) into (by = 1) or out of (by = -1) `running`, per type and per
-- queue (K.running, read by reserve's limits, ADR 0038).
local function hold(type_name, queue, by)
  local a, b = 'type|' .. type_name, 'queue|' .. queue
  running_deltas[a] = (running_deltas[a] or 0) + by
  running_deltas[b] = (running_deltas[b] or 0) + by
end

local function add_count(member, by)
  count_deltas[member] = (count_deltas[member] or 0) + by
end

-- Write the counter changes this call has summed.
local function flush()
  if depth_delta ~= 0 then redis.call('INCRBY', K.depth, depth_delta) end
  for member, by in pairs(count_deltas) do
    if by ~= 0 and redis.call('HINCRBY', K.counts, member, by) <= 0 then
      redis.call('HDEL', K.counts, member)
    end
  end
  for member, by in pairs(running_deltas) do
    if by ~= 0 and redis.call('HINCRBY', K.running, member, by) <= 0 then
      redis.call('HDEL', K.running, member)
    end
  end
  depth_delta, count_deltas, running_deltas = 0, {}, {}
end

-- Whether a task of (type, queue) has a max_concurrency limit (its settle wakes waiters).
local function concurrency_limited(type_name, queue)
  for _, member in ipairs({'type|' .. type_name, 'queue|' .. queue}) do
    local v = redis.call('HGET', K.limits, member)
    if v and string.match(v, '^([^|]*)|') ~= '' then return true end
  end
  return false
end

local function group_name(queue, state, priority)
  return queue .. '|' .. state .. '|' .. priority
end

-- Count task `id` in its (queue, state, priority) group. Queued groups are sorted sets by
-- created_at (counts reports their oldest task); the others are plain counters, cheaper to
-- keep on the hot path.
local function group_join(queue, state, priority, id, created_at)
  local member = group_name(queue, state, priority)
  if state == 'queued' then
    redis.call('ZADD', group_key(member), created_at, id)
    add_once(K.groups, member)
  else
    add_count(member, 1)
  end
end

local function group_leave(queue, state, priority, id)
  local member = group_name(queue, state, priority)
  if state == 'queued' then
    redis.call('ZREM', group_key(member), id)  -- counts.lua drops the group once it is empty
  else
    add_count(member, -1)
  end
end

-- Move task `id` of (queue, priority, created_at) from state `from` to `to` in the counts index.
local function move_group(id, queue, priority, created_at, from, to)
  group_leave(queue, from, priority, id)
  group_join(queue, to, priority, id, created_at)
end

-- The same, reading the task's fields first.
local function regroup(id, from, to)
  local f = redis.call('HMGET', task_key(id), 'queue', 'priority', 'created_at')
  move_group(id, f[1], f[2], f[3], from, to)
end

-- Index a task that just became queued and count it. It is due at the later of run_at and
-- created_at (model.priority.due_at): a task already due goes straight to its queue's ready
-- set, scored due - head as reserve's promote would; the others wait in sched_key by due time.
-- Returns true if the task is due now.
local function schedule(id, queue, run_at, created_at, head, now)
  local due = math.max(tonumber(run_at), tonumber(created_at))
  add_once(K.queues, queue)
  depth_delta = depth_delta + 1
  if due <= tonumber(now) then
    redis.call('ZADD', ready_key(queue), due - tonumber(head), id)
    return true
  end
  redis.call('ZADD', sched_key(queue), due, id)
  return false
end

-- Remove a queued task from its queue's indexes and the count.
local function unschedule(id, queue)
  redis.call('ZREM', sched_key(queue), id)
  redis.call('ZREM', ready_key(queue), id)
  depth_delta = depth_delta - 1
end

-- Append one MessagePack attempt line to a task's history (a concatenation of lines).
local function append_line(id, line)
  local key = task_key(id)
  local history = redis.call('HGET', key, 'history')
  if not history then history = '' end
  redis.call('HSET', key, 'history', history .. line)
  redis.call('HINCRBY', key, 'history_len', 1)
end

-- Clear the lease of a task that leaves `running` (its caller sets `updated_at`).
local function drop_lease(id)
  redis.call('HDEL', task_key(id), 'lease_expires_at', 'cancel_requested', 'token')
  redis.call('ZREM', K.leases, id)
end

-- Delete a task that is no longer queued nor running, with its idempotency key, its unique
-- lock and its count
-- (the caller removes it from its done or kept set).
local function forget(id, state)
  local key = task_key(id)
  local f = redis.call('HMGET', key, 'idempotency_key', 'queue', 'priority', 'ulock', 'workflow')
  if f[1] and redis.call('HGET', K.ikeys, f[1]) == id then redis.call('HDEL', K.ikeys, f[1]) end
  if f[5] then redis.call('ZREM', workflow_key(f[5]), id) end
  if f[4] then  -- its unique lock (ADR 0038), if it still holds it
    local v = redis.call('HGET', K.ulocks, f[4])
    if v and string.sub(v, 1, #id + 1) == id .. '|' then redis.call('HDEL', K.ulocks, f[4]) end
  end
  redis.call('ZREM', K.all, id)
  group_leave(f[2], state, f[3], id)
  redis.call('DEL', key)
end

local function wake()
  redis.call('PUBLISH', K.wake, '1')
end

-- Dependencies (model.deps, translated): a blocked task's `waiting` counts its parents not yet
-- settled; waits_key(parent) holds its blocked dependents, and the parent's hash has `waited`
-- '1' once it has had any (settle.lua looks for dependents only then). PARENT_FAILED comes from
-- model.deps (generated by scripts.py), so the cancelled dependent's error reads as there.

-- The MessagePack TaskResult of a task cancelled because `parent` ended `pstate`.
local function parent_failed(id, parent, pstate, now)
  return cmsgpack.pack({task_id = id, status = 'CANCELLED', completed_at = tonumber(now),
    error = PARENT_FAILED .. ' ' .. pstate .. ': ' .. parent})
end

-- Split the comma-joined parent ids of a task ('' = none).
local function split_ids(joined)
  local ids = {}
  for id in string.gmatch(joined or '', '[^,]+') do ids[#ids + 1] = id end
  return ids
end

-- model.deps.gate: from the parents' states (nil: not stored, taken as settled), the state a
-- task starts in ('queued', 'blocked' or 'cancelled'), the parents it waits on, and for a
-- cancelled one the parent that failed it and that parent's state.
local function gate(parents, opf)
  local waiting = {}
  for _, parent in ipairs(parents) do
    local state = redis.call('HGET', task_key(parent), 'state')
    if state and state ~= 'succeeded' then
      if state == 'dead' or state == 'cancelled' then
        if opf ~= 'run' then return 'cancelled', {}, parent, state end
      else
        waiting[#waiting + 1] = parent
      end
    end
  end
  if #waiting > 0 then return 'blocked', waiting end
  return 'queued', waiting
end

-- Tasks ended in terminal states in one call (`ended`: a list of {id, state}): take them off
-- their dependents' waiting counts, queueing those at zero, or cancel those a failure cancels
-- (and theirs, a level of the graph per round), naming the parent model.deps.blame picks: the
-- smallest id among those that failed it. Returns true if a task became queued and due.
local function release(ended, now)
  local pending, woken = ended, false
  while #pending > 0 do
    local fields, order, counts, failed = {}, {}, {}, {}
    for _, item in ipairs(pending) do
      local parent, pstate = item[1], item[2]
      local children = redis.call('SMEMBERS', waits_key(parent))
      if #children > 0 then
        redis.call('DEL', waits_key(parent))
        for _, child in ipairs(children) do
          local f = fields[child]
          if not f then
            f = redis.call('HMGET', task_key(child), 'state', 'waiting', 'opf', 'queue',
              'run_at', 'created_at', 'head', 'priority', 'attempt')
            fields[child] = f
            order[#order + 1] = child
          end
          if f[1] == 'blocked' then
            if pstate == 'succeeded' or f[3] == 'run' then
              counts[child] = (counts[child] or 0) + 1
            elseif not failed[child] or id_less(parent, failed[child][1]) then
              failed[child] = {parent, pstate}
            end
          end
        end
      end
    end
    pending = {}
    table.sort(order, id_less)
    for _, child in ipairs(order) do
      local key, f, blamed = task_key(child), fields[child], failed[child]
      if blamed then
        redis.call('HSET', key, 'state', 'cancelled', 'waiting', 0, 'updated_at', now,
          'finished_at', now, 'result', parent_failed(child, blamed[1], blamed[2], now),
          'result_attempt', f[9])
        move_group(child, f[4], f[8], f[6], 'blocked', 'cancelled')
        redis.call('ZADD', done_key('cancelled'), now, child)
        pending[#pending + 1] = {child, 'cancelled'}
      elseif counts[child] then
        local left = (tonumber(f[2]) or 1) - counts[child]
        if left <= 0 then
          redis.call('HSET', key, 'state', 'queued', 'waiting', 0, 'updated_at', now)
          move_group(child, f[4], f[8], f[6], 'blocked', 'queued')
          if schedule(child, f[4], f[5], f[6], f[7], now) then woken = true end
        else
          redis.call('HSET', key, 'waiting', left, 'updated_at', now)
        end
      end
    end
  end
  return woken
end

-- _common.lua: helpers shared by every script (prepended after the generated key preamble).
-- KEYS: none of its own. ARGV: none of its own (NS is ARGV[1], read by the preamble).
-- Returns: nothing; defines local functions.
-- Invariant kept by their callers: a task id sits in exactly the indexes its state implies:
--   queued  -> sched_key(queue) or ready_key(queue), counted in K.depth
--   running -> K.leases
--   succeeded/dead/cancelled -> done_key(state)
--   always  -> K.all and group_key(queue|state|priority)
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

local function group_name(queue, state, priority)
  return queue .. '|' .. state .. '|' .. priority
end

local function group_join(member, id, created_at)
  redis.call('ZADD', group_key(member), created_at, id)
  redis.call('SADD', K.groups, member)
end

local function group_leave(member, id)
  local key = group_key(member)
  redis.call('ZREM', key, id)
  if redis.call('EXISTS', key) == 0 then redis.call('SREM', K.groups, member) end
end

-- Move task `id` from state `from` to state `to` in the counts index.
local function regroup(id, from, to)
  local f = redis.call('HMGET', task_key(id), 'queue', 'priority', 'created_at')
  group_leave(group_name(f[1], from, f[2]), id)
  group_join(group_name(f[1], to, f[2]), id, f[3])
end

-- Index a task that just became queued (due at run_at) and count it.
local function schedule(id, queue, run_at)
  redis.call('ZADD', sched_key(queue), run_at, id)
  redis.call('SADD', K.queues, queue)
  redis.call('INCR', K.depth)
end

-- Remove a queued task from its queue's indexes and the count.
local function unschedule(id, queue)
  redis.call('ZREM', sched_key(queue), id)
  redis.call('ZREM', ready_key(queue), id)
  redis.call('DECR', K.depth)
end

-- Append one MessagePack attempt line to a task's history (a concatenation of lines).
local function append_line(id, line)
  local key = task_key(id)
  local history = redis.call('HGET', key, 'history')
  if not history then history = '' end
  redis.call('HSET', key, 'history', history .. line)
  redis.call('HINCRBY', key, 'history_len', 1)
end

-- Clear the lease of a task that leaves `running`.
local function drop_lease(id, now)
  redis.call('HSET', task_key(id), 'updated_at', now)
  redis.call('HDEL', task_key(id), 'lease_expires_at', 'cancel_requested', 'token')
  redis.call('ZREM', K.leases, id)
end

local function wake()
  redis.call('PUBLISH', K.wake, '1')
end

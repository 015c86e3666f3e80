-- list.lua: one page of tasks matching a filter, newest (greatest id) first.
-- KEYS[1]: the namespace's depth key (routes the call).
-- ARGV[2]: cursor ('' = from the newest; else ids below it); ARGV[3]: limit; ARGV[4]: scan
--   budget (ids examined at most); ARGV[5]: created_after ('' = any, inclusive); ARGV[6]:
--   created_before ('' = any, exclusive); then four sets, each a count and that many values:
--   states, types, queues, priorities (count -1 = any); then the workflow id ('' = any: the
--   walk goes over K.all, else over that workflow's own set).
-- Returns: {more, resume, rec1, rec2, ...}: recN is a matching task's HGETALL array (at most
--   limit); more is 1 if a further match exists; resume is '' or, when the budget ran out
--   first, the last id examined (the next page starts below it).
-- Invariant: read only; bounded by the budget however selective the filter is.
local cursor, limit, budget = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local after, before_ = tonumber(ARGV[5]), tonumber(ARGV[6])
local sets, pos = {}, 7
for s = 1, 4 do
  local n = tonumber(ARGV[pos])
  pos = pos + 1
  if n >= 0 then
    local set = {}
    for j = 1, n do set[ARGV[pos + j - 1]] = true end
    sets[s] = set
    pos = pos + n
  end
end
local walked = K.all
if ARGV[pos] and ARGV[pos] ~= '' then walked = workflow_key(ARGV[pos]) end
local function matches(f)
  if sets[1] and not sets[1][f[1]] then return false end
  if sets[2] and not sets[2][f[2]] then return false end
  if sets[3] and not sets[3][f[3]] then return false end
  if sets[4] and not sets[4][f[4]] then return false end
  local created = tonumber(f[5])
  if after and created < after then return false end
  if before_ and created >= before_ then return false end
  return true
end
local out = {0, ''}
local found, scanned, chunk = 0, 0, math.min(math.max(limit + 1, 64), 1000)
local max = cursor == '' and '+' or '(' .. cursor
while true do
  local ids = redis.call('ZREVRANGEBYLEX', walked, max, '-', 'LIMIT', 0, chunk)
  for _, id in ipairs(ids) do
    scanned = scanned + 1
    local f = redis.call('HMGET', task_key(id), 'state', 'type', 'queue', 'priority',
      'created_at')
    if matches(f) then
      if found == limit then
        out[1] = 1
        return out
      end
      found = found + 1
      out[#out + 1] = redis.call('HGETALL', task_key(id))
    end
    if scanned >= budget then
      out[1], out[2] = 1, id
      return out
    end
  end
  if #ids < chunk then return out end
  max = '(' .. ids[#ids]
end

-- resign.lua: give up a singleton duty if the holder holds it.
-- KEYS[1]: the namespace's depth key (routes the call).
-- ARGV[2]: duty name; ARGV[3]: holder.
-- Returns: 1 if it was released, else 0.
-- Invariant: nobody can release a duty another holder holds.
local key = leader_key(ARGV[2])
if redis.call('HGET', key, 'holder') == ARGV[3] then
  redis.call('DEL', key)
  return 1
end
return 0

-- record_instance.lua: replace one engine process's telemetry report; drop the expired ones.
-- KEYS[1]: the namespace's depth key (routes the call).
-- ARGV[2]: instance; ARGV[3]: now; ARGV[4]: expires_at (now + ttl); ARGV[5]: report bytes.
-- Returns: the number of expired reports dropped.
-- Invariant: K.instances and K.instances_expiry name the same instances.
local expired = redis.call('ZRANGEBYSCORE', K.instances_expiry, '-inf', '(' .. ARGV[3])
for _, name in ipairs(expired) do
  redis.call('HDEL', K.instances, name)
end
if #expired > 0 then
  redis.call('ZREMRANGEBYSCORE', K.instances_expiry, '-inf', '(' .. ARGV[3])
end
redis.call('HSET', K.instances, ARGV[2], ARGV[5])
redis.call('ZADD', K.instances_expiry, ARGV[4], ARGV[2])
return #expired

-- leader.lua: take or renew the lease on a singleton duty.
-- KEYS[1]: the namespace's depth key (routes the call).
-- ARGV[2]: duty name; ARGV[3]: holder; ARGV[4]: now; ARGV[5]: new expiry (now + ttl).
-- Returns: 1 if `holder` holds the duty until the new expiry, else 0.
-- Invariant: one holder at a time; a lease is free once its expiry <= now. Time is the
--   caller's `now`, never the server's clock, so a fake clock drives it in tests.
local key = leader_key(ARGV[2])
local f = redis.call('HMGET', key, 'holder', 'expires_at')
if not f[1] or f[1] == ARGV[3] or tonumber(f[2]) <= tonumber(ARGV[4]) then
  redis.call('HSET', key, 'holder', ARGV[3], 'expires_at', ARGV[5])
  return 1
end
return 0

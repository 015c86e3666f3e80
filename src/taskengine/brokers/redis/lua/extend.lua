-- extend.lua: push held leases to a new expiry; say which are lost or asked to cancel.
-- KEYS[1]: the namespace's depth key (routes the call).
-- ARGV[2]: the new expiry (now + lease_for); then pairs: task id, token.
-- Returns: one of 'held', 'lost', 'cancel_requested' per pair, in input order.
-- Invariant: only the current token of a running task extends it (fencing); a lease past its
--   expiry that requeue_expired has not taken yet is still held and is revived.
local expires = ARGV[2]
local out = {}
for i = 3, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local f = redis.call('HMGET', task_key(id), 'state', 'token', 'cancel_requested')
  if f[1] ~= 'running' or f[2] ~= token then
    out[#out + 1] = 'lost'
  else
    redis.call('HSET', task_key(id), 'lease_expires_at', expires)
    redis.call('ZADD', K.leases, expires, id)
    out[#out + 1] = f[3] == '1' and 'cancel_requested' or 'held'
  end
end
return out

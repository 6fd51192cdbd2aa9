-- Remove servers from the fleet with everything kept about them.
--
-- KEYS  due claims state failing errors
-- ARGV  server id ...
-- Returns how many were in the fleet.
local removed = 0
for i = 1, #ARGV do
  removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  redis.call('HDEL', KEYS[2], ARGV[i])
  redis.call('HDEL', KEYS[3], ARGV[i])
  redis.call('SREM', KEYS[4], ARGV[i])
  redis.call('HDEL', KEYS[5], ARGV[i])
end
return removed

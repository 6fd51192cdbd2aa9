-- Add servers to the fleet, due at once; a server already there keeps its due time.
--
-- KEYS  due
-- ARGV  server id ...
-- Returns how many were new.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000

local added = 0
for i = 1, #ARGV do
  added = added + redis.call('ZADD', KEYS[1], 'NX', now, ARGV[i])
end
return added

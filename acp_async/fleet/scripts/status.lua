-- How the fleet is doing, on Redis's clock.
--
-- KEYS  due workers failing events
-- ARGV  interval (seconds: a server due longer ago than this is overdue)
-- Returns {servers, workers, overdue, oldest overdue in seconds ('' when none), failing,
-- stream length}.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000

local overdue_before = now - tonumber(ARGV[1])
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local oldest = ''
if first[2] and tonumber(first[2]) < overdue_before then
  oldest = string.format('%.6f', now - tonumber(first[2]))
end
return {
  redis.call('ZCARD', KEYS[1]),
  redis.call('ZCOUNT', KEYS[2], now, '+inf'),
  redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. string.format('%.6f', overdue_before)),
  oldest,
  redis.call('SCARD', KEYS[3]),
  redis.call('XLEN', KEYS[4]),
}

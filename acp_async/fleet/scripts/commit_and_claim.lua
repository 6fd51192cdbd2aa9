-- One round trip of a worker: hand claims back, commit finished polls, claim due servers.
--
-- KEYS  due claims state events failing workers seq errors
-- ARGV  worker maxlen lease claim-count commit-count release-count, then per release:
--       its server id and token; then per commit: its server id,
--       "<token> <delay> <failed 0|1> <event count> <packed state>" and its error ('' for
--       a good poll), then per event: key kind run previous. (Three arguments a commit,
--       not seven: redis-py encodes each argument on its own.)
-- Returns {now, next due ('' unless nothing was due), how many were released, how many
-- servers are failing, commit results ('ok', 'done' or 'fenced') ..., claims ...}, a
-- claim being four items: server id, token, due time, saved state.
--
-- A failing server's last error is kept in the errors hash, beside the failing set, and
-- dropped when it recovers (a fleet written before that hash existed has no entry).
--
-- A commit is written only while its claim is the worker's (the token) and its lease
-- (the due time the claim set) has not ended, on Redis's clock: fenced otherwise. A
-- commit whose reply was lost and is sent again finds its token on the state it wrote:
-- 'done', nothing appended twice.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000

local due, claims, state, events, failing, workers, seq, errors = unpack(KEYS)
local lease = tonumber(ARGV[3])
if tonumber(ARGV[4]) > 0 or tonumber(ARGV[5]) > 0 then  -- a worker at work, not stopping
  redis.call('ZADD', workers, now + 2 * lease, ARGV[1])
  redis.call('ZREMRANGEBYSCORE', workers, '-inf', now - 100 * lease)  -- long gone
end
local out = {string.format('%.6f', now), '', 0, 0}
local i = 7
for r = 1, tonumber(ARGV[6]) do  -- released: due at once, so any worker takes it now
  if redis.call('HGET', claims, ARGV[i]) == ARGV[i + 1] then
    redis.call('HDEL', claims, ARGV[i])
    redis.call('ZADD', due, 'XX', now, ARGV[i])
    out[3] = out[3] + 1
  end
  i = i + 2
end
for s = 1, tonumber(ARGV[5]) do
  local sid, head, err = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local _, stop, token, delay, failed, count = string.find(head, '^(%d+) (%S+) ([01]) (%d+) ')
  local blob = string.sub(head, stop + 1)
  delay, count = tonumber(delay), tonumber(count)
  i = i + 3
  -- Still ours: the claim's token, and its lease (the due time it set) not over yet.
  local held = redis.call('HGET', claims, sid) == token
  if held then
    local lease_ends = tonumber(redis.call('ZSCORE', due, sid))  -- nil: no longer due at all
    held = lease_ends ~= nil and lease_ends >= now  -- else a zombie, taken over or not
  end
  if held then
    for e = 1, count do
      redis.call('XADD', events, 'MAXLEN', '~', ARGV[2], '*', 'key', ARGV[i], 'kind', ARGV[i + 1],
                 'server', sid, 'run', ARGV[i + 2], 'previous', ARGV[i + 3])
      i = i + 4
    end
    redis.call('HSET', state, sid, token .. ':' .. blob)
    redis.call('ZADD', due, 'XX', now + delay, sid)
    redis.call('HDEL', claims, sid)
    if failed == '1' then
      redis.call('SADD', failing, sid)
      redis.call('HSET', errors, sid, err)
    elseif redis.call('SREM', failing, sid) == 1 then
      redis.call('HDEL', errors, sid)
    end
    table.insert(out, 'ok')
  else
    i = i + 4 * count
    local saved = redis.call('HGET', state, sid)
    if saved and string.sub(saved, 1, #token + 1) == token .. ':' then
      table.insert(out, 'done')
    else
      table.insert(out, 'fenced')
    end
  end
end
out[4] = redis.call('SCARD', failing)
local wanted = tonumber(ARGV[4])
if wanted <= 0 then
  return out
end
local ids = redis.call('ZRANGEBYSCORE', due, '-inf', now, 'WITHSCORES', 'LIMIT', 0, wanted)
if #ids == 0 then
  local first = redis.call('ZRANGE', due, 0, 0, 'WITHSCORES')
  out[2] = first[2] or ''
  return out
end
local until_ = now + lease
for c = 1, #ids, 2 do
  local sid = ids[c]
  local token = tostring(redis.call('INCR', seq))
  redis.call('ZADD', due, until_, sid)
  redis.call('HSET', claims, sid, token)
  table.insert(out, sid)
  table.insert(out, token)
  table.insert(out, ids[c + 1])
  table.insert(out, redis.call('HGET', state, sid) or '')
end
return out

-- Apply a batch of session operations, atomically and in order.
-- KEYS = sessions hash, order zset, order sequence, expiry zset (session id -> deadline, in
-- ms of Redis's clock). ARGV[1] = session ttl (ms, 0 = none), ARGV[2] = how many expired
-- sessions a call purges besides one per registration it makes; ARGV[3..] = the operations,
-- one after the other: 'r', session id, encoded handle (register: replace, move to the end
-- of the order, and set its deadline to now + ttl, or none without a ttl); 'n', session id,
-- encoded handle (register a new session: as 'r', unless a live session has the id, which is
-- then left as it is); 'u', session id (unregister); 'g', session id (get the encoded
-- handle); 'l' (list). A session whose deadline has passed is absent for 'n', 'g' and 'l';
-- the call then purges a bounded number of them, and gives the keys the latest deadline as
-- their own expiry (none while a session without a deadline is registered). Without a ttl and
-- without an expiry zset none of this runs.
-- A key of the wrong type holds nothing the store wrote: it is replaced (and reported), as is
-- an order sequence that is not an integer (rebuilt from the order zset).
-- Answer: one entry per operation: 1 (register, unregister), 0 ('n' found a live session),
-- the encoded handle or nil (get), {ids in registration order, HGETALL of the hash} (list),
-- plus the expired ids to leave out when an expiry zset exists; then one last entry, the
-- list of repaired keys.
local repaired = {}
local kinds = {'hash', 'zset', 'string', 'zset'}
for k = 1, 4 do
  local kind = redis.call('TYPE', KEYS[k])['ok']
  if kind ~= 'none' and kind ~= kinds[k] then
    redis.call('DEL', KEYS[k])
    repaired[#repaired + 1] = KEYS[k]
  end
end

local function next_order()
  local seq = redis.pcall('INCR', KEYS[3])
  if type(seq) == 'table' then  -- not an integer: go on after the highest order there is
    local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
    local from = 0
    if last[2] then from = math.floor(tonumber(last[2])) end
    redis.call('SET', KEYS[3], string.format('%d', from))
    repaired[#repaired + 1] = KEYS[3]
    seq = redis.call('INCR', KEYS[3])
  end
  return seq
end

local ttl = tonumber(ARGV[1])
local timed = ttl > 0 or redis.call('EXISTS', KEYS[4]) == 1
local now = 0
if timed then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local out = {}
local n = 0
local added = 0
local changed = false
local i = 3
while i <= #ARGV do
  local kind = ARGV[i]
  n = n + 1
  local live = false
  if kind == 'n' then
    local id = ARGV[i + 1]
    live = redis.call('HEXISTS', KEYS[1], id) == 1
    if live and timed then
      local deadline = redis.call('ZSCORE', KEYS[4], id)
      if deadline and tonumber(deadline) <= now then live = false end
    end
    if live then
      out[n] = 0
      i = i + 3
    else
      kind = 'r'
    end
  end
  if live then
    -- a live session has the id: nothing changes
  elseif kind == 'r' then
    local id = ARGV[i + 1]
    local seq = next_order()
    redis.call('HSET', KEYS[1], id, ARGV[i + 2])
    redis.call('ZADD', KEYS[2], seq, id)
    if ttl > 0 then
      redis.call('ZADD', KEYS[4], string.format('%d', now + ttl), id)
      added = added + 1
    elseif timed then
      redis.call('ZREM', KEYS[4], id)
    end
    changed = true
    out[n] = 1
    i = i + 3
  elseif kind == 'u' then
    local id = ARGV[i + 1]
    redis.call('HDEL', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
    if timed then redis.call('ZREM', KEYS[4], id) end
    changed = true
    out[n] = 1
    i = i + 2
  elseif kind == 'g' then
    local id = ARGV[i + 1]
    local handle = redis.call('HGET', KEYS[1], id)
    if handle and timed then
      local deadline = redis.call('ZSCORE', KEYS[4], id)
      if deadline and tonumber(deadline) <= now then handle = false end
    end
    out[n] = handle
    i = i + 2
  elseif kind == 'l' then
    local listed = {redis.call('ZRANGE', KEYS[2], 0, -1), redis.call('HGETALL', KEYS[1])}
    if timed then listed[3] = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', string.format('%d', now)) end
    out[n] = listed
    i = i + 1
  else
    return redis.error_reply('unknown session operation ' .. tostring(kind))
  end
end
if timed then
  local limit = tonumber(ARGV[2]) + added
  local expired = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', string.format('%d', now), 'LIMIT', 0, limit)
  for _, id in ipairs(expired) do
    redis.call('HDEL', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
    redis.call('ZREM', KEYS[4], id)
    changed = true
  end
  if changed then
    local live = redis.call('HLEN', KEYS[1])
    if live == 0 then
      redis.call('DEL', KEYS[3])
    elseif redis.call('ZCARD', KEYS[4]) == live then
      local last = redis.call('ZRANGE', KEYS[4], -1, -1, 'WITHSCORES')
      local at = tonumber(last[2])
      if at >= 0 and at < 9007199254740992 then
        for k = 1, 4 do redis.call('PEXPIREAT', KEYS[k], string.format('%d', at)) end
      else  -- no deadline this script sets (inf, or past what '%d' formats): keep the keys
        for k = 1, 4 do redis.call('PERSIST', KEYS[k]) end
      end
    else
      for k = 1, 4 do redis.call('PERSIST', KEYS[k]) end
    end
  end
end
out[n + 1] = repaired
return out

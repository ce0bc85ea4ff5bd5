-- sessions.lua: apply a batch of session operations, atomically and in order.
-- KEYS = sessions hash, order zset, order sequence, expiry zset (session id -> deadline, ms),
-- live hash (backend -> live sessions), of hash (session id -> backend); see lib.lua.
-- ARGV[1] = msgpack {ttl = session ttl (ms, 0 = none), purge = how many expired sessions a call
-- purges besides one per registration it makes, clock = the injected clock (ms) or absent
-- (Redis's TIME), limits = backend -> most live sessions, known = the catalogue's backend names,
-- channel = where a freed slot is published}; ARGV[2..] = the operations, one after the other:
-- 'r', session id, encoded handle, backend (register: replace, move to the end of the order,
-- and set its deadline to now + ttl, or none without a ttl); 'n', id, handle, backend (register
-- a new session: as 'r', unless a live session has the id, which is then left as it is); 'u',
-- session id (unregister); 'g', session id (get the encoded handle); 'l' (list).
-- A registration that would take a slot past its backend's limit changes nothing (a live
-- session re-registered on its own backend takes no new slot). With limits, every expired
-- session is purged first, so none counts; otherwise a session whose deadline has passed is
-- absent for 'n', 'g' and 'l', and the call purges a bounded number of them. The keys get the
-- latest deadline as their own expiry (none while a session without a deadline is
-- registered). Without a ttl and without an expiry zset, the clock is never read.
-- Answer: one entry per operation: 1 (register, unregister), 0 ('n' found a live session),
-- {3, live, limit} (the backend is full), the encoded handle or nil (get), {ids in registration
-- order, HGETALL of the hash} (list), plus the expired ids to leave out when deadlines matter;
-- then the list of repaired keys, then the live counts (backend, count, ...).
local m = cmsgpack.unpack(ARGV[1])
SK = {sessions = KEYS[1], order = KEYS[2], seq = KEYS[3], expiry = KEYS[4], live = KEYS[5], of = KEYS[6]}
S.ttl = m.ttl
S.purge = m.purge
S.clock = m.clock or false
S.limits = m.limits or {}
S.known = set_of(m.known)
S.channel = m.channel or false
sessions_begin()
live_counts()
if next(S.limits) ~= nil then purge(-1) end

local out = {}
local n = 0
local i = 2
while i <= #ARGV do
  local kind = ARGV[i]
  n = n + 1
  if kind == 'r' or kind == 'n' then
    local id, backend = ARGV[i + 1], ARGV[i + 3]
    local verdict = may_register(id, backend, kind == 'n')
    if verdict == 1 then register(id, ARGV[i + 2], backend) end
    out[n] = verdict
    i = i + 4
  elseif kind == 'u' then
    local id = ARGV[i + 1]
    if redis.call('HEXISTS', SK.sessions, id) == 1 or redis.call('HEXISTS', SK.of, id) == 1 then forget(id) end
    out[n] = 1
    i = i + 2
  elseif kind == 'g' then
    local id = ARGV[i + 1]
    local handle = redis.call('HGET', SK.sessions, id)
    if handle and expired(id) then handle = false end
    out[n] = handle
    i = i + 2
  elseif kind == 'l' then
    local listed = {redis.call('ZRANGE', SK.order, 0, -1), redis.call('HGETALL', SK.sessions)}
    if timed then
      listed[3] = redis.call('ZRANGEBYSCORE', SK.expiry, '-inf', string.format('%d', now_ms()))
    end
    out[n] = listed
    i = i + 1
  else
    return redis.error_reply('unknown session operation ' .. tostring(kind))
  end
end
sessions_end()
out[n + 1] = repaired
out[n + 2] = flat_counts()
return out

-- commit.lua: apply what a batch decided, atomically: learned-state writes, then each decision's
-- binding, session and probe slot, and the journal.
-- KEYS[1] = journal stream, KEYS[2] = journal sequence, KEYS[3] = learned-state version,
-- KEYS[4] = profiles version, KEYS[5] = learned-state hash, KEYS[6] = profiles hash,
-- KEYS[7..12] = the session keys (sessions, order, seq, expiry, live, of: see lib.lua),
-- KEYS[13..] = binding and temporary-backend keys.
-- ARGV[1] = msgpack {bttl = binding ttl (ms, 0 = none), maxlen = journal maxlen (0 = no
-- journal), hv, pv = the versions the caller planned with, strict = apply nothing unless both
-- versions, the fullness of limited backends (`full`) and the named profiles (`named`) are as
-- planned, known, limits, full, named, clock, counts (as in state.lua), ttl = session ttl (ms),
-- purge (as in sessions.lua), channel, writes = {{backend, ledger index or 0 to delete}},
-- events = {record index} (one-event journal
-- records of those writes), records = {{cond, binding, temporary, bound, temporary backend,
-- backend, events, record index, session, probe}} (the distinct ones), order = per decision,
-- the index of its record among them, rotations = {{counter key index, {record index per
-- turn}}} (optional, with strict) and cttl = the counters' ttl (s, 0 = none): an order entry
-- -g is a round-robin decision of rotation g: it advances g's counter (as state.lua does) and
-- takes the record of the turn the value gives ((value - 1) % turns + 1); it is answered with
-- that value instead of 1 (its record is always a plain one: cond 0, no session, no probe)};
-- ARGV[2..] = binary values (ledgers, journal records, handles),
-- each named by its index in ARGV.
-- The writes and their events are applied only if the learned-state version is `hv`; events
-- without writes are always journaled.
-- A record's conditions, all checked before anything of it is applied:
--   cond 0: none; 1 (reuse the bound backend): the binding holds `bound`; its ttl slides and the
--   temporary backend is forgotten; 2 (bind): the binding holds `bound` (false: unbound), then
--   it is set to `backend` and the temporary backend forgotten; 3 (reuse the temporary backend):
--   the binding holds `bound` and the temporary key `temporary`, both slide; 4 (a new temporary
--   backend): as 3, then the temporary key is set to `backend`.
--   session {id, handle index, exclusive}: register it on `backend` (see lib.lua may_register);
--   probe (a ledger index, 0 = none): the learned-state version must be `hv`; the ledger is then
--   written (the selection took a probe slot).
-- A record whose conditions hold is applied and journaled (fields s: its first event sequence,
-- e: its number of events, absent for 2, r: the record) and answered 1; otherwise nothing of it changes and it
-- is answered {1, binding, temporary} (a binding changed), {2} (the session is live), {3, live,
-- limit} (the backend is full) or {4} (the learned state changed).
-- A learned-state write bumps the version and publishes 'health' on the channel; a freed session
-- slot publishes 'slot'. Values the store would not have written are repaired and reported: a
-- binding naming no backend is unbound, a journal sequence that is not an integer is rebuilt from
-- the newest readable entry, a key of the wrong type is replaced.
-- Answer: {msgpack {applied (1/0: strict and stale), fresh (1/0: the learned-state version was
-- `hv`), answers, repaired keys, hv, pv, live counts, Redis's clock (ms, 0 with an injected
-- clock), ledger pairs sent, profile pairs sent, changed named profile pairs sent}, then those
-- pairs (as state.lua)}.
local m = cmsgpack.unpack(ARGV[1])
SK = {sessions = KEYS[7], order = KEYS[8], seq = KEYS[9], expiry = KEYS[10], live = KEYS[11], of = KEYS[12]}
S.clock = m.clock or false
S.limits = m.limits or {}
S.known = set_of(m.known)
S.ttl = m.ttl or 0
S.purge = m.purge or 0
S.channel = m.channel or false
J.stream, J.seq, J.maxlen = KEYS[1], KEYS[2], m.maxlen
local bttl = m.bttl

local sessions = m.counts
for _, r in ipairs(m.records) do
  if r[9] then sessions = true end
end
if sessions then
  sessions_begin()
  if m.counts or next(S.limits) ~= nil then purge(-1) end
end

local hv = read_version(KEYS[3])
local pv = read_version(KEYS[4])
local fresh = hv == m.hv
local applied = true
local changed = {}
if m.strict then
  applied = fresh and pv == m.pv and (next(S.limits) == nil or same_full(m.full))
  applied = applied and same_profiles(KEYS[6], m.named, changed)
end

local function put(key, value)
  if bttl > 0 then
    redis.call('SET', key, value, 'PX', bttl)
  else
    redis.call('SET', key, value)
  end
end

local function slide(key)
  if bttl > 0 then redis.call('PEXPIRE', key, bttl) end
end

local out = {}
local wrote = false
local turns = {}  -- decision index -> the counter value of a round-robin decision
if applied and m.rotations then
  local uses = {}
  for _, index in ipairs(m.order) do
    if index < 0 then uses[-index] = (uses[-index] or 0) + 1 end
  end
  local values, taken = {}, {}
  for g, count in pairs(uses) do
    local key = KEYS[m.rotations[g][1]]
    values[g], taken[g] = advance_many(key, count), 0
    if m.cttl > 0 then redis.call('EXPIRE', key, m.cttl) end
  end
  for i, index in ipairs(m.order) do
    if index < 0 then
      local g = -index
      taken[g] = taken[g] + 1
      local value = values[g][taken[g]]
      local records = m.rotations[g][2]
      turns[i] = value
      m.order[i] = records[(value - 1) % #records + 1]
    end
  end
end
if applied then
  m.records = expand(m.records, m.order)
  if #m.writes == 0 or fresh then
    for _, w in ipairs(m.writes) do
      if w[2] > 0 then
        redis.call('HSET', KEYS[5], w[1], ARGV[w[2]])
      else
        redis.call('HDEL', KEYS[5], w[1])
      end
      wrote = true
    end
    for _, index in ipairs(m.events) do journal(1, ARGV[index]) end
  end
  for i, r in ipairs(m.records) do
    if r[1] == 0 and not r[9] and r[10] == 0 then  -- no binding, session or probe: nothing to check
      journal(r[7], ARGV[r[8]])
      out[i] = turns[i] or 1
    else
      local cond, backend, session, probe = r[1], r[6], r[9], r[10]
      local bkey, tkey = KEYS[r[2]], KEYS[r[3]]
      local answer = 1
      if cond ~= 0 then
        local bound, temporary = backend_at(bkey), backend_at(tkey)
        if bound ~= r[4] or ((cond == 3 or cond == 4) and temporary ~= r[5]) then
          answer = {1, bound, temporary}
        end
      end
      if answer == 1 and probe > 0 and not fresh then answer = {4} end
      if answer == 1 and session then
        answer = may_register(session[1], backend, session[3])
        if answer == 0 then answer = {2} end
      end
      if answer == 1 then
        if cond == 1 then
          slide(bkey)
          redis.call('DEL', tkey)
        elseif cond == 2 then
          put(bkey, backend)
          redis.call('DEL', tkey)
        elseif cond == 3 then
          slide(bkey)
          slide(tkey)
        elseif cond == 4 then
          slide(bkey)
          put(tkey, backend)
        end
        if session then register(session[1], ARGV[session[2]], backend) end
        if probe > 0 then
          redis.call('HSET', KEYS[5], backend, ARGV[probe])
          wrote = true
        end
        journal(r[7], ARGV[r[8]])
      end
      out[i] = answer
    end
  end
end
if wrote then
  hv = bump(KEYS[3], hv)
  if S.channel then redis.call('PUBLISH', S.channel, 'health') end
end
if sessions then sessions_end() end
journal_end()
local raw = {}
local cached_hv = m.hv
if fresh then cached_hv = hv end  -- its own writes: the caller applies them
local ledgers, documents, named = view(KEYS[5], KEYS[6], hv, cached_hv, pv, m.pv, changed, raw)
local clock = 0
if not S.clock then clock = time_ms() end
local meta = {
  applied and 1 or 0, fresh and 1 or 0, out, repaired, hv, pv, flat_counts(), clock, ledgers, documents, named,
}
local reply = {cmsgpack.pack(meta)}
for j = 1, #raw do reply[j + 1] = raw[j] end
return reply

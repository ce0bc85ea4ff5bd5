-- state.lua: check what a batch of selections was planned with, then advance the counters and
-- read the bindings it needs.
-- KEYS[1] = learned-state version, KEYS[2] = profiles version, KEYS[3] = learned-state hash
-- (backend -> ledger), KEYS[4] = profiles hash, KEYS[5..10] = the session keys (sessions, order,
-- seq, expiry, live, of: see lib.lua), KEYS[11..] = counter, binding and temporary-backend keys.
-- ARGV[1] = msgpack {ttl = counter ttl (s, 0 = none), hv, pv = the versions the caller planned
-- with, known = the catalogue's backend names, limits = backend -> limit, full = the limited
-- backends planned as full, named = {profile id, SHA-1 of the document the caller has or ''} for
-- the profiles the requests name, clock = injected clock (ms) or absent, counts = whether live
-- counts took part (every expired session is then purged first), peek = read without changing
-- anything (a value the store would not have written only reads as absent), ops, order = the
-- distinct operations and, per selection, the index of its operation among them}:
--   {1, counter, guard}: INCR the counter (GET with peek) and answer its value;
--   {2, binding, temporary, counter, eligible, held_out, guard}: a sticky key: answer {1, bound}
--     when the bound backend is eligible, else {2, temporary, bound} when the bound backend is
--     held out and its temporary backend is eligible, else INCR the counter and answer
--     {3, value, bound or false, temporary or false};
--   {3, counter, ordered, tied, guard}: least loaded among `ordered`, planned as `tied`: INCR;
--   {0, guard}: nothing but the guard.
--   guard: a session id that must not be live (false: none); if it is, the op answers false and
--   changes nothing.
--   A sticky op whose binding an earlier op of the call may change (it took the counter, or it
--   reuses the bound backend and so forgets a temporary one) answers 'later', and so does every
--   op after it: nothing of them is read or advanced.
-- Stale: when a version differs, a named profile's document differs, a limited backend's
-- fullness differs from `full`, or a least loaded op's tied set differs, nothing is advanced
-- and every op is unanswered.
-- Values the store would not have written are repaired where that loses nothing and reported:
-- a counter that is not an integer from 0 to below 2^53, or would overflow, starts again; a
-- binding that names no backend of the catalogue is removed; a key of the wrong type is replaced.
-- Answer: {msgpack {fresh (1/0), answers, repaired keys, hv, pv, live counts (backend, n, ...),
-- Redis's clock (ms, 0 with an injected clock), ledger pairs sent (-1: none), profile pairs sent
-- (-1: none), changed named profile pairs sent (-1: none)}, then those pairs: backend, ledger,
-- ..., profile id, document, ..., profile id, document or nil, ...}.
local m = cmsgpack.unpack(ARGV[1])
m.ops = expand(m.ops, m.order)
SK = {sessions = KEYS[5], order = KEYS[6], seq = KEYS[7], expiry = KEYS[8], live = KEYS[9], of = KEYS[10]}
S.clock = m.clock or false
S.limits = m.limits or {}
S.known = set_of(m.known)
local ttl = m.ttl
local peek = m.peek

local guards = false
for _, op in ipairs(m.ops) do
  if op[#op] then guards = true end
end
local sessions = guards or m.counts
if sessions then
  sessions_begin()
  if m.counts then purge(-1) end
end

local hv = read_version(KEYS[1])
local pv = read_version(KEYS[2])
local fresh = hv == m.hv and pv == m.pv
local changed = {}
if fresh and not same_profiles(KEYS[4], m.named, changed) then fresh = false end
if fresh and m.counts then
  if not same_full(m.full) then fresh = false end
  for _, op in ipairs(m.ops) do
    if op[1] == 3 and not same_list(least_loaded(op[3]), op[4]) then fresh = false end
  end
end

local advanced = {}  -- the counters advanced, each given its ttl once after the operations
local function counter(key)
  if peek then
    local value = redis.pcall('GET', key)
    return is_count(value) and tonumber(value) or 0
  end
  advanced[key] = true
  return advance(key)
end

local out = {}
if fresh then
  local rebinding, cut = {}, false
  for i, op in ipairs(m.ops) do
    local kind, guard = op[1], op[#op]
    if cut or (kind == 2 and rebinding[op[2]]) then
      cut = true
      out[i] = 'later'
    elseif guard and is_live(guard) then
      out[i] = false
    elseif kind == 0 then
      out[i] = 1
    elseif kind == 2 then
      local bound, temporary = backend_at(KEYS[op[2]], peek), backend_at(KEYS[op[3]], peek)
      local eligible, held = set_of(op[5]), set_of(op[6])
      if bound and eligible[bound] then
        out[i] = {1, bound}
        if temporary then rebinding[op[2]] = true end  -- its commit forgets the temporary backend
      elseif bound and held[bound] and temporary and eligible[temporary] then
        out[i] = {2, temporary, bound}
      else
        out[i] = {3, counter(KEYS[op[4]]), bound, temporary}
        rebinding[op[2]] = true
      end
    else
      out[i] = counter(KEYS[op[2]])
    end
  end
end
if ttl > 0 then
  for key in pairs(advanced) do redis.call('EXPIRE', key, ttl) end
end
if sessions then sessions_end() end
local raw = {}
local ledgers, documents, named = view(KEYS[3], KEYS[4], hv, m.hv, pv, m.pv, changed, raw)
local clock = 0
if not S.clock then clock = time_ms() end
local meta = {fresh and 1 or 0, out, repaired, hv, pv, flat_counts(), clock, ledgers, documents, named}
local reply = {cmsgpack.pack(meta)}
for j = 1, #raw do reply[j + 1] = raw[j] end
return reply

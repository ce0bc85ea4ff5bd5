-- lib.lua: what the store's scripts share. Each script is loaded as this text followed by its
-- own, so everything here is local to one script call. It reads no KEYS or ARGV itself: a
-- script sets SK (the session keys), S (the session settings of the call) and J (the journal
-- keys) before it uses the functions that need them.
--
-- SK.sessions hash   session id -> encoded handle
-- SK.order    zset   session id -> registration sequence
-- SK.seq      string the last registration sequence
-- SK.expiry   zset   session id -> deadline (ms), for sessions registered with a ttl
-- SK.live     hash   backend -> live sessions (only backends that have some)
-- SK.of       hash   session id -> backend (what SK.live counts)
-- S.clock: the injected clock (ms) or false (Redis's TIME); S.ttl: session ttl (ms, 0 = none);
-- S.purge: expired sessions a call purges besides one per registration; S.limits: backend ->
-- limit; S.known: the catalogue's backend names (a set); S.channel: where changes are published.
--
-- Values the store would not have written are repaired where that loses nothing; each
-- repaired key is added to `repaired`, which every script returns.

local repaired = {}
local function note(key) repaired[#repaired + 1] = key end

local redis_ms = nil
local function time_ms()  -- Redis's clock in ms, read at most once per call
  if not redis_ms then
    local t = redis.call('TIME')
    redis_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return redis_ms
end

local SK = {}
local S = {clock = false, ttl = 0, purge = 0, limits = {}, known = {}, channel = false}

local function now_ms()
  if S.clock then return S.clock end
  return time_ms()
end

local function set_of(list)
  local set = {}
  for _, name in ipairs(list or {}) do set[name] = true end
  return set
end

-- The items a script's caller sent as `distinct` lists and the `order` of their indexes (a
-- batch sends each list once however many of its selections share it).
local function expand(distinct, order)
  local items = {}
  for i, index in ipairs(order) do items[i] = distinct[index] end
  return items
end

local function is_count(raw)  -- a whole number Lua holds exactly
  return type(raw) == 'string' and #raw <= 16 and string.match(raw, '^%d+$') ~= nil
    and tonumber(raw) < 9007199254740992
end

-- Round-robin counters: INCR, starting again from a value the store would not have written.

local function advance(key)
  local value = redis.pcall('INCR', key)
  if type(value) == 'table' or value < 1 or value >= 9007199254740992 then
    -- not an integer from 0 to below 2^53 (Lua's numbers are exact only below it): it starts again
    redis.call('DEL', key)
    note(key)
    value = redis.call('INCR', key)
  end
  return value
end

-- The values `count` advances of the counter at `key` give, in order, in as few calls as they
-- allow (one INCR and one INCRBY unless the counter starts again on the way).
local function advance_many(key, count)
  local first = advance(key)
  local values = {first}
  if count > 1 and count - 1 < 9007199254740992 - first then  -- exact: first + count may round
    redis.call('INCRBY', key, count - 1)
    for j = 2, count do values[j] = first + j - 1 end
  else
    for j = 2, count do values[j] = advance(key) end
  end
  return values
end

-- Versions: a string holding a whole number; absent reads as 0. -----------------------------

local function read_version(key)
  local raw = redis.pcall('GET', key)
  if raw == false then return 0 end
  if is_count(raw) then return tonumber(raw) end
  redis.call('DEL', key)
  note(key)
  return 0
end

-- The next version after `current`: one more, or, when the key was absent, a start taken from
-- the clock (µs), so a version lost with its key never comes back as a value a process cached.
local function bump(key, current)
  local v = current + 1
  if current == 0 then
    local t = redis.call('TIME')
    v = tonumber(t[1]) * 1000000 + tonumber(t[2])
  end
  redis.call('SET', key, string.format('%d', v))
  return v
end

local function read_hash(key)  -- HGETALL; a key of the wrong type holds nothing: replaced
  local all = redis.pcall('HGETALL', key)
  if all.err then
    redis.call('DEL', key)
    note(key)
    return {}
  end
  return all
end

-- A stored backend name (a binding): one of the catalogue's, or absent (a bad value is removed,
-- unless `keep`: then it only reads as absent).
local function backend_at(key, keep)
  local value = redis.pcall('GET', key)
  if type(value) == 'table' or (value and not S.known[value]) then
    if not keep then
      redis.call('DEL', key)
      note(key)
    end
    return false
  end
  return value
end

-- Whether each profile of `named` ({id, SHA-1 of the document the caller has, or ''}) is stored
-- as the caller has it (a hand edit changes no version); appends the others to `changed` (id,
-- document or false). A profiles key of the wrong type holds nothing the store wrote: replaced.
local function same_profiles(key, named, changed)
  if not named or #named == 0 then return true end
  local ids = {}
  for i, pair in ipairs(named) do ids[i] = pair[1] end
  local documents = redis.pcall('HMGET', key, unpack(ids))
  if documents.err then
    redis.call('DEL', key)
    note(key)
    documents = {}
  end
  local same = true
  for i, pair in ipairs(named) do
    local document = documents[i] or false
    if (document and redis.sha1hex(document) or '') ~= pair[2] then
      same = false
      changed[#changed + 1] = pair[1]
      changed[#changed + 1] = document
    end
  end
  return same
end

-- Live sessions per backend ------------------------------------------------------------------

local counts = nil  -- backend -> live sessions, once read

local function recount()
  redis.call('DEL', SK.live)
  local fresh = {}
  local of = read_hash(SK.of)
  for i = 1, #of, 2 do
    local backend = of[i + 1]
    if S.known[backend] then
      fresh[backend] = (fresh[backend] or 0) + 1
    else
      redis.call('HDEL', SK.of, of[i])
      note(SK.of)
    end
  end
  for backend, n in pairs(fresh) do redis.call('HSET', SK.live, backend, string.format('%d', n)) end
  return fresh
end

-- The live counts, checked: each a count of a known backend, together as many as SK.of holds;
-- otherwise they are counted again from SK.of.
local function live_counts()
  if counts then return counts end
  local raw = redis.pcall('HGETALL', SK.live)
  local total = redis.pcall('HLEN', SK.of)
  local good = not raw.err and type(total) == 'number'
  local found, sum = {}, 0
  if good then
    for i = 1, #raw, 2 do
      local n = is_count(raw[i + 1]) and tonumber(raw[i + 1])
      if not S.known[raw[i]] or not n or n < 1 then
        good = false
        break
      end
      found[raw[i]] = n
      sum = sum + n
    end
  end
  if good and sum == total then
    counts = found
  else
    note(SK.live)
    counts = recount()
  end
  return counts
end

local function flat_counts()
  local out = {}
  for backend, n in pairs(live_counts()) do
    out[#out + 1] = backend
    out[#out + 1] = n
  end
  return out
end

local function add_live(backend, by)
  local c = live_counts()
  local n = (c[backend] or 0) + by
  if n > 0 then
    c[backend] = n
    redis.call('HSET', SK.live, backend, string.format('%d', n))
  else
    c[backend] = nil
    redis.call('HDEL', SK.live, backend)
  end
end

-- Whether each limited backend is full now matches `expected` (a list of backends).
local function same_full(expected)
  local c = live_counts()
  local want = set_of(expected)
  for backend, limit in pairs(S.limits) do
    if ((c[backend] or 0) >= limit) ~= (want[backend] == true) then return false end
  end
  for backend in pairs(want) do
    if not S.limits[backend] then return false end
  end
  return true
end

-- The candidates of `ordered` with the fewest live sessions, in order.
local function least_loaded(ordered)
  local c = live_counts()
  local fewest = nil
  for _, backend in ipairs(ordered) do
    local n = c[backend] or 0
    if fewest == nil or n < fewest then fewest = n end
  end
  local tied = {}
  for _, backend in ipairs(ordered) do
    if (c[backend] or 0) == fewest then tied[#tied + 1] = backend end
  end
  return tied
end

local function same_list(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do
    if a[i] ~= b[i] then return false end
  end
  return true
end

-- Sessions ------------------------------------------------------------------------------------

local timed = nil       -- whether deadlines matter (a ttl, or sessions registered with one)
local changed = false   -- whether the sessions changed (their keys' expiry is then set again)
local freed = false     -- whether a session slot freed (published on S.channel)
local added = 0         -- registrations made (each purges one more expired session)

local function sessions_begin()
  local kinds = {{'sessions', 'hash'}, {'order', 'zset'}, {'seq', 'string'}, {'expiry', 'zset'}}
  for _, pair in ipairs(kinds) do
    local key = SK[pair[1]]
    local found = redis.call('TYPE', key)['ok']
    if found ~= 'none' and found ~= pair[2] then
      redis.call('DEL', key)
      note(key)
    end
  end
  timed = S.ttl > 0 or redis.call('EXISTS', SK.expiry) == 1
end

local function expired(id)
  if not timed then return false end
  local deadline = redis.call('ZSCORE', SK.expiry, id)
  return deadline and tonumber(deadline) <= now_ms()
end

local function is_live(id)
  return redis.call('HEXISTS', SK.sessions, id) == 1 and not expired(id)
end

local function forget(id)  -- unregister, or purge an expired session
  redis.call('HDEL', SK.sessions, id)
  redis.call('ZREM', SK.order, id)
  if timed then redis.call('ZREM', SK.expiry, id) end
  local backend = redis.call('HGET', SK.of, id)
  if backend then
    redis.call('HDEL', SK.of, id)
    if S.known[backend] then add_live(backend, -1) end
    freed = true
  end
  changed = true
end

local function purge(limit)  -- expired sessions, at most `limit` (all with a negative one)
  if not timed then return end
  local cut = string.format('%d', now_ms())
  local ids
  if limit < 0 then
    ids = redis.call('ZRANGEBYSCORE', SK.expiry, '-inf', cut)
  else
    ids = redis.call('ZRANGEBYSCORE', SK.expiry, '-inf', cut, 'LIMIT', 0, limit)
  end
  for _, id in ipairs(ids) do forget(id) end
end

-- What registering `id` on `backend` would do: 1 (it may), 0 (`exclusive` and a live session has
-- the id) or {3, live, limit} (it would take a slot past the backend's limit; a live session
-- re-registered on its own backend takes none).
local function may_register(id, backend, exclusive)
  local live = is_live(id)
  if exclusive and live then return 0 end
  local limit = S.limits[backend]
  if limit then
    local current = live and redis.call('HGET', SK.of, id)
    local n = live_counts()[backend] or 0
    if current ~= backend and n >= limit then return {3, n, limit} end
  end
  return 1
end

local function next_order()
  local seq = redis.pcall('INCR', SK.seq)
  if type(seq) == 'table' then  -- not an integer: go on after the highest order there is
    local last = redis.call('ZRANGE', SK.order, -1, -1, 'WITHSCORES')
    local from = 0
    if last[2] then from = math.floor(tonumber(last[2])) end
    redis.call('SET', SK.seq, string.format('%d', from))
    note(SK.seq)
    seq = redis.call('INCR', SK.seq)
  end
  return seq
end

-- Register (or replace) session `id` on `backend`; checked with may_register first.
local function register(id, handle, backend)
  local current = redis.call('HGET', SK.of, id)
  if current ~= backend then
    if current then
      if S.known[current] then add_live(current, -1) end
      freed = true
    end
    add_live(backend, 1)
    redis.call('HSET', SK.of, id, backend)
  end
  redis.call('HSET', SK.sessions, id, handle)
  redis.call('ZADD', SK.order, next_order(), id)
  if S.ttl > 0 then
    redis.call('ZADD', SK.expiry, string.format('%d', now_ms() + S.ttl), id)
    added = added + 1
  elseif timed then
    redis.call('ZREM', SK.expiry, id)
  end
  changed = true
end

-- After the operations: purge a bounded number of expired sessions, give the session keys the
-- latest deadline as their own expiry (none while a session without one is registered), and
-- publish a freed slot.
local function sessions_end()
  if timed then
    purge(S.purge + added)
    if changed then
      local keys = {SK.sessions, SK.order, SK.seq, SK.expiry, SK.live, SK.of}
      local live = redis.call('HLEN', SK.sessions)
      if live == 0 then
        redis.call('DEL', SK.seq)
      elseif redis.call('ZCARD', SK.expiry) == live then
        local last = tonumber(redis.call('ZRANGE', SK.expiry, -1, -1, 'WITHSCORES')[2])
        if not (last >= 0 and last < 9007199254740992) then  -- no deadline a script sets (inf, say)
          for _, key in ipairs(keys) do redis.call('PERSIST', key) end
        elseif S.clock then  -- an injected clock: the same distance on Redis's
          local left = math.max(1, math.floor(last - S.clock))
          for _, key in ipairs(keys) do redis.call('PEXPIRE', key, left) end
        else
          local at = string.format('%d', last)
          for _, key in ipairs(keys) do redis.call('PEXPIREAT', key, at) end
        end
      else
        for _, key in ipairs(keys) do redis.call('PERSIST', key) end
      end
    end
  end
  if freed and S.channel then redis.call('PUBLISH', S.channel, 'slot') end
end

-- The journal: a stream of records (s: first event sequence, e: events, 2 when absent, r: the record)

local J = {}  -- J.stream, J.seq (the fleet's last event sequence), J.maxlen
local sequence, first_sequence = nil, nil

local function is_sequence(value)
  return value and value >= 0 and value == math.floor(value) and value < 9007199254740992
end

-- The fleet's last event sequence; one that is not a whole number is rebuilt from the newest
-- readable entry (a sequence and 1 or 2 events, as `journal` writes).
local function last_sequence()
  local raw = redis.pcall('GET', J.seq)
  local seq = type(raw) == 'string' and tonumber(raw)
  if is_sequence(seq) then return seq end
  local newest = redis.pcall('XREVRANGE', J.stream, '+', '-', 'COUNT', 100)
  local rebuilt = 0
  if type(newest) == 'table' and not newest.err then
    for _, entry in ipairs(newest) do
      local fields, start, count = entry[2], nil, 2
      for k = 1, #fields - 1, 2 do
        if fields[k] == 's' then start = tonumber(fields[k + 1])
        elseif fields[k] == 'e' then count = tonumber(fields[k + 1]) or 2 end
      end
      if is_sequence(start) and (count == 1 or count == 2) and is_sequence(start + count) then
        rebuilt = start + count - 1
        break
      end
    end
  end
  if raw ~= false then note(J.seq) end
  return rebuilt
end

-- Entries are appended untrimmed; journal_end trims the stream once (MAXLEN ~), which keeps
-- what trimming at every append would and costs a fraction.
-- A decision's two events are the default and go without an `e` field (fewer arguments per
-- entry, the costliest step of a batch); a one-event record says `e` 1.
local function xadd(call, start, events, record)
  if events == 2 then return call('XADD', J.stream, '*', 's', start, 'r', record) end
  return call('XADD', J.stream, '*', 's', start, 'e', events, 'r', record)
end

local function append(start, events, record)
  local done = xadd(redis.pcall, start, events, record)
  if type(done) == 'table' and done.err then
    redis.call('DEL', J.stream)
    note(J.stream)
    xadd(redis.call, start, events, record)
  end
end

local function journal(events, record)  -- one record of `events` events
  if sequence == nil then
    sequence = last_sequence()
    first_sequence = sequence
  end
  if J.maxlen > 0 then append(string.format('%d', sequence + 1), events, record) end
  sequence = sequence + events
end

local function journal_end()
  if sequence ~= nil and sequence ~= first_sequence then
    redis.call('SET', J.seq, string.format('%d', sequence))
  end
  if sequence ~= nil and J.maxlen > 0 then redis.call('XTRIM', J.stream, 'MAXLEN', '~', J.maxlen) end
end

-- What a process caches, for a reply: the versions, and what changed since those it has. ------

-- Appends to `raw` the learned state (backend, ledger pairs) when `hv` is not `cached_hv`, then
-- the profiles (id, document pairs) when `pv` is not `cached_pv`, else the named profiles that
-- changed (`changed`, from same_profiles); returns how many pairs of each (-1: not sent).
-- Ledgers of backends the catalogue does not name are removed.
local function view(health, profiles, hv, cached_hv, pv, cached_pv, changed, raw)
  local ledgers, documents = -1, -1
  if hv ~= cached_hv then
    ledgers = 0
    local all = read_hash(health)
    for i = 1, #all, 2 do
      if S.known[all[i]] then
        raw[#raw + 1] = all[i]
        raw[#raw + 1] = all[i + 1]
        ledgers = ledgers + 1
      else
        redis.call('HDEL', health, all[i])
        note(health)
      end
    end
  end
  local named = -1
  if pv ~= cached_pv then
    local all = read_hash(profiles)
    documents = #all / 2
    for i = 1, #all do raw[#raw + 1] = all[i] end
  elseif #changed > 0 then
    named = #changed / 2
    for i = 1, #changed do raw[#raw + 1] = changed[i] end
  end
  return ledgers, documents, named
end

-- The script's text follows. -------------------------------------------------------------------

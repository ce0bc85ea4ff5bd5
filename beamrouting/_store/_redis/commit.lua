-- Bind (compare-and-set) and journal a batch of decisions, atomically.
-- KEYS[1] = journal stream, KEYS[2] = journal sequence, KEYS[3..] = binding keys.
-- ARGV[1] = binding ttl (ms, 0 = none), ARGV[2] = journal maxlen (0 = no journal),
-- ARGV[3] = msgpack list of records {condition, binding, expected, backend, events},
-- ARGV[4] = msgpack list of the catalogue's backend names, ARGV[4 + i] = the journal payload of
-- record i (binary, so not inside the msgpack: cmsgpack has no bin type).
-- condition 0: none; 1 (reuse): the binding must hold `expected`, its ttl slides;
-- 2 (bind): the binding must hold `expected` (false = unbound), then it is set to `backend`.
-- A record whose condition holds is journaled (fields s: its first event sequence, e: its
-- number of events, r: the payload) and answered 1; one whose condition fails changes nothing
-- and is answered {current binding or false}.
-- Values the store would not have written are repaired and reported: a binding that names no
-- backend of the catalogue is unbound; a journal sequence that is not an integer is rebuilt
-- from the newest readable stream entry (a sequence and 1 or 2 events, as `append` writes);
-- a stream of the wrong type is replaced.
-- Answer: msgpack {answers, repaired keys}.
local ttl = tonumber(ARGV[1])
local maxlen = tonumber(ARGV[2])
local records = cmsgpack.unpack(ARGV[3])
local known = {}
for _, name in ipairs(cmsgpack.unpack(ARGV[4])) do known[name] = true end
local repaired = {}

local function binding(key)
  local current = redis.pcall('GET', key)
  if type(current) == 'table' or (current and not known[current]) then
    redis.call('DEL', key)
    repaired[#repaired + 1] = key
    return false
  end
  return current
end

local function is_sequence(value)
  return value and value >= 0 and value == math.floor(value) and value < 9007199254740992
end

local function last_sequence()
  local raw = redis.pcall('GET', KEYS[2])
  local seq = type(raw) == 'string' and tonumber(raw)
  if is_sequence(seq) then return seq end
  local newest = redis.pcall('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 100)
  local rebuilt = 0
  if type(newest) == 'table' and not newest.err then
    for _, entry in ipairs(newest) do
      local fields, first, count = entry[2], nil, 2
      for k = 1, #fields - 1, 2 do
        if fields[k] == 's' then first = tonumber(fields[k + 1])
        elseif fields[k] == 'e' then count = tonumber(fields[k + 1]) or 2 end
      end
      if is_sequence(first) and (count == 1 or count == 2) and is_sequence(first + count) then
        rebuilt = first + count - 1
        break
      end
    end
  end
  if raw ~= false then repaired[#repaired + 1] = KEYS[2] end
  return rebuilt
end

local function append(fields)
  local added = redis.pcall('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', unpack(fields))
  if type(added) == 'table' and added.err then
    redis.call('DEL', KEYS[1])
    repaired[#repaired + 1] = KEYS[1]
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', unpack(fields))
  end
end

local seq = nil
local start = nil
local out = {}
for i, r in ipairs(records) do
  local cond = r[1]
  local ok = true
  if cond ~= 0 then
    local key = KEYS[r[2]]
    local current = binding(key)
    if current ~= r[3] then
      ok = false
      out[i] = {current}
    elseif cond == 1 then
      if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
    elseif ttl > 0 then
      redis.call('SET', key, r[4], 'PX', ttl)
    else
      redis.call('SET', key, r[4])
    end
  end
  if ok then
    if seq == nil then
      seq = last_sequence()
      start = seq
    end
    if maxlen > 0 then
      append({'s', string.format('%d', seq + 1), 'e', string.format('%d', r[5]), 'r', ARGV[4 + i]})
    end
    seq = seq + r[5]
    out[i] = 1
  end
end
if seq ~= nil and seq ~= start then redis.call('SET', KEYS[2], string.format('%d', seq)) end
return cmsgpack.pack({out, repaired})

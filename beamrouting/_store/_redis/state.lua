-- Advance the counters and read the bindings and profiles a batch of selections needs.
-- KEYS[1] = the profiles hash, KEYS[2..] = counter and binding keys.
-- ARGV[1] = counter ttl (seconds, 0 = none), ARGV[2] = msgpack list of ops,
-- ARGV[3] = msgpack list of the catalogue's backend names, ARGV[4..] = the profile ids to fetch.
-- op {1, counter, n}: INCRBY the counter by n, answer its new value.
-- op {2, binding, counter, eligible...}: if the binding holds an eligible backend answer
--   {1, backend}; else INCR the counter and answer {0, value, current binding or false}.
-- Values the store would not have written are repaired where that loses nothing, and each
-- repaired key is reported: a counter that is not an integer from 0 to below 2^53, or
-- would overflow, starts again (Lua's numbers are exact only below 2^53); a binding that
-- names no backend of the catalogue is removed (the key is unbound); a key of the wrong type
-- is replaced.
-- Answer: {msgpack {answers, repaired keys}, each profile document (raw bytes, or nil)}.
local ttl = tonumber(ARGV[1])
local ops = cmsgpack.unpack(ARGV[2])
local known = {}
for _, name in ipairs(cmsgpack.unpack(ARGV[3])) do known[name] = true end
local repaired = {}

local function advance(key, by)
  local value = redis.pcall('INCRBY', key, by)
  if type(value) == 'table' or value < by or value >= 9007199254740992 then
    redis.call('DEL', key)
    repaired[#repaired + 1] = key
    value = redis.call('INCRBY', key, by)
  end
  if ttl > 0 then redis.call('EXPIRE', key, ttl) end
  return value
end

local function binding(key)
  local bound = redis.pcall('GET', key)
  if type(bound) == 'table' or (bound and not known[bound]) then
    redis.call('DEL', key)
    repaired[#repaired + 1] = key
    return false
  end
  return bound
end

local out = {}
for i, op in ipairs(ops) do
  if op[1] == 1 then
    out[i] = advance(KEYS[op[2]], op[3])
  else
    local bound = binding(KEYS[op[2]])
    local reuse = false
    if bound then
      for j = 4, #op do
        if op[j] == bound then reuse = true break end
      end
    end
    if reuse then
      out[i] = {1, bound}
    else
      out[i] = {0, advance(KEYS[op[3]], 1), bound}
    end
  end
end
local wanted = #ARGV - 3
local profiles = {}
if wanted > 0 then
  profiles = redis.pcall('HMGET', KEYS[1], unpack(ARGV, 4, 3 + wanted))
  if profiles.err then
    redis.call('DEL', KEYS[1])
    repaired[#repaired + 1] = KEYS[1]
    profiles = {}
  end
end
local reply = {cmsgpack.pack({out, repaired})}
for j = 1, wanted do reply[j + 1] = profiles[j] or false end
return reply

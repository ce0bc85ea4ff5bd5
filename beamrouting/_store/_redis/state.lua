-- KEYS[1] = profiles hash, KEYS[2..] = counter and binding keys.
-- ARGV[1] = counter ttl (seconds, 0 = none), ARGV[2] = msgpack list of ops, ARGV[3] = number
-- of profile ids, ARGV[4..] = the profile ids.
-- op {1, counter, n}: INCRBY the counter by n, answer its new value.
-- op {2, binding, counter, eligible...}: if the binding holds an eligible backend answer
--   {1, backend}; else INCR the counter and answer {0, value, current binding or false}.
-- Answer: msgpack {answers, profiles}.
local ttl = tonumber(ARGV[1])
local ops = cmsgpack.unpack(ARGV[2])
local out = {}
for i, op in ipairs(ops) do
  if op[1] == 1 then
    local key = KEYS[op[2]]
    out[i] = redis.call('INCRBY', key, op[3])
    if ttl > 0 then redis.call('EXPIRE', key, ttl) end
  else
    local bound = redis.call('GET', KEYS[op[2]])
    local reuse = false
    if bound then
      for j = 4, #op do
        if op[j] == bound then reuse = true break end
      end
    end
    if reuse then
      out[i] = {1, bound}
    else
      local key = KEYS[op[3]]
      local value = redis.call('INCR', key)
      if ttl > 0 then redis.call('EXPIRE', key, ttl) end
      out[i] = {0, value, bound}
    end
  end
end
local profiles = {}
local n = tonumber(ARGV[3])
if n > 0 then profiles = redis.call('HMGET', KEYS[1], unpack(ARGV, 4, 3 + n)) end
return cmsgpack.pack({out, profiles})

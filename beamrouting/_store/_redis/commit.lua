-- KEYS[1] = journal stream, KEYS[2] = journal sequence, KEYS[3..] = binding keys.
-- ARGV[1] = binding ttl (ms, 0 = none), ARGV[2] = journal maxlen (0 = no journal),
-- ARGV[3] = msgpack list of records {condition, binding, expected, backend, events}, ARGV[3 + i]
-- = the journal payload of record i (binary, so not inside the msgpack: cmsgpack has no bin type).
-- condition 0: none; 1 (reuse): the binding must hold `expected`, its ttl slides;
-- 2 (bind): the binding must hold `expected` (false = unbound), then it is set to `backend`.
-- A record whose condition holds is journaled (`events` sequence numbers) and answered 1;
-- one whose condition fails changes nothing and is answered {current binding or false}.
local ttl = tonumber(ARGV[1])
local maxlen = tonumber(ARGV[2])
local records = cmsgpack.unpack(ARGV[3])
local seq = tonumber(redis.call('GET', KEYS[2]) or '0')
local start = seq
local out = {}
for i, r in ipairs(records) do
  local cond = r[1]
  local ok = true
  if cond ~= 0 then
    local key = KEYS[r[2]]
    local current = redis.call('GET', key)
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
    if maxlen > 0 then
      redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 's', string.format('%d', seq + 1), 'r', ARGV[3 + i])
    end
    seq = seq + r[5]
    out[i] = 1
  end
end
if seq ~= start then redis.call('SET', KEYS[2], string.format('%d', seq)) end
return cmsgpack.pack(out)

-- profiles.lua: store or delete a policy profile, or set them all, and bump the profiles version
-- so every process refreshes what it cached.
-- KEYS[1] = profiles hash (profile id -> JSON document), KEYS[2] = profiles version.
-- ARGV = 'p', profile id, document (store or replace); or 'd', profile id (delete); or 'x',
-- channel, then profile id, document, ... (exactly these profiles, and 'config' is published on
-- the channel: waiting callers select again).
-- A profiles key of the wrong type holds nothing the store wrote: it is replaced (and reported).
-- Answer: {1 (stored, set) or whether the profile existed (1/0), the repaired keys, the version
-- before, the version after}.
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'none' and kind ~= 'hash' then
  redis.call('DEL', KEYS[1])
  note(KEYS[1])
end
local version = read_version(KEYS[2])
local before = version
local result = 1
if ARGV[1] == 'p' then
  redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
elseif ARGV[1] == 'x' then
  redis.call('DEL', KEYS[1])
  for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
  redis.call('PUBLISH', ARGV[2], 'config')
else
  result = redis.call('HDEL', KEYS[1], ARGV[2])
end
if result == 1 then version = bump(KEYS[2], version) end
return {result, repaired, before, version}

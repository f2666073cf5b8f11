-- One deposit trail write: KEYS[1] the trail hash; ARGV: ttl, "|final|states|", n, then n field/value
-- pairs set every time, then field/value pairs set only when absent (who, how much: written once).
-- A trail already in a final state is left alone (returns 0).
local cur = redis.call('HGET', KEYS[1], 'state')
if cur and string.find(ARGV[2], '|' .. cur .. '|', 1, true) then return 0 end
local n = tonumber(ARGV[3])
for i = 4, 3 + 2 * n, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
for i = 4 + 2 * n, #ARGV, 2 do redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1

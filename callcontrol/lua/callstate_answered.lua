-- The recipient answered: read the call and, while it is neither ended nor settled, store answered_at.
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local raw = redis.call('HGETALL', KEYS[1])
if redis.call('HEXISTS', KEYS[1], 'ended_at') == 0 and redis.call('HGET', KEYS[1], 'settled') ~= '1' then
  redis.call('HSET', KEYS[1], 'answered_at', ARGV[1])
end
return raw

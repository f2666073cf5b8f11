-- Adoption of an orphaned call: the owner recorded in the call moves from ARGV[1] (whose heartbeat is
-- gone) to ARGV[2] only if nobody moved it first, so of several survivors exactly one adopts it.
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HGET', KEYS[1], 'settled') == '1' then return 0 end
if redis.call('HGET', KEYS[1], 'instance') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'instance', ARGV[2])
return 1

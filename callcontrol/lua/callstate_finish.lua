-- The end of a call, fixed once (first writer wins): the state as it stands after, or false when the
-- call is unknown (nothing is created then).
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
redis.call('HSETNX', KEYS[1], 'ended_at', ARGV[1])
redis.call('HSETNX', KEYS[1], 'end_reason', ARGV[2])
return redis.call('HGETALL', KEYS[1])

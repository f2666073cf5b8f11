-- Acceptance counts only while the call has not ended (a caller who hangs up during screening is
-- never billed), and only once.
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
if redis.call('HEXISTS', KEYS[1], 'ended_at') == 1 then return false end
redis.call('HSETNX', KEYS[1], 'accepted_at', ARGV[1])
redis.call('HSET', KEYS[1], 'screen_result', 'accepted')
return redis.call('HGET', KEYS[1], 'accepted_at')

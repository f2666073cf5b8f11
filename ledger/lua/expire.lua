-- Reaper: KEYS[1] account, KEYS[3] hold queue. ARGV[6] hold id.
-- A due pending hold (lease passed) is voided, flagged for review and journalled; a resolved one just
-- leaves the queue (compaction drops its record after the retention). Not an operation of its own: the
-- hold's status makes it resolve at most once, and the account keeps no idempotency record for it.
-- Replies "=-" when nothing was expired.
local member = SCOPE .. '|' .. ARGV[6]
local score = redis.call('ZSCORE', KEYS[3], member)
if not score or tonumber(score) * 1000 > tonumber(NOW) then return '=-' end
local hf = 'h:' .. ARGV[6]
local a = redis.call('HMGET', OPKEY, 's', 'p', 'h', 'v', 'f', 'n', 'o', hf)
local ha, hc, hs, he, _, hm
if a[8] then ha, hc, hs, he, _, hm = string.match(a[8], HOLD) end
if not a[1] or hs ~= 'pending' then
  redis.call('ZREM', KEYS[3], member)
  return '=-'
end
local release = ha - hc
local h, v = fmt('%d', a[3] - release), fmt('%d', a[4] + 1)
hs = 'expired'
redis.call('HSET', OPKEY, 'h', h, 'v', v, hf, ha .. '|' .. hc .. '|' .. hs .. '|' .. he .. '|1|' .. hm)
redis.call('ZREM', KEYS[3], member)
return journal('expire', '=' .. ha .. '|' .. hc .. '|' .. hs .. '|' .. he .. '|' .. hm, a, a[1], a[2], h, v,
  '0', release == 0 and '0' or fmt('%d', -release), '0', 'lease expired', '', ARGV[6], ha, hc, hs, he, '1')

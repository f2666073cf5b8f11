-- Reaper: KEYS[3] account, KEYS[4] hold queue. ARGV[6] hold id.
-- A due pending hold (lease passed) is voided, flagged for review and journalled; a due resolved hold
-- (retention passed) is dropped. No idempotency record: the hold's status makes it resolve at most
-- once. Replies "=-" when nothing was expired.
local member = SCOPE .. '|' .. ARGV[6]
local score = redis.call('ZSCORE', KEYS[4], member)
if not score or tonumber(score) * 1000 > tonumber(NOW) then return '=-' end
local hf = 'h:' .. ARGV[6]
local acc, h = load_account(KEYS[3], hf)
if not acc or not h then
  redis.call('ZREM', KEYS[4], member)
  return '=-'
end
if h.s ~= 'pending' then
  redis.call('HDEL', KEYS[3], hf)
  redis.call('ZREM', KEYS[4], member)
  return '=-'
end
local release = h.a - h.c
acc.h = acc.h - release
h.s = 'expired'
h.r = 1
save_account(KEYS[3], acc, hf, h)
redis.call('ZADD', KEYS[4], retain_until(), member)
return append('expire', hold_result(h), account_tail(acc, 0, -release, ARGV[6], h, 0, 'lease expired', ''))

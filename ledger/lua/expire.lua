-- Reaper: KEYS[3] account, KEYS[4] hold queue. ARGV[6] hold id.
-- A due pending hold (lease passed) is voided, flagged for review and journalled; a resolved one just
-- leaves the queue (compaction drops its record after the retention). Not an operation of its own: the
-- hold's status makes it resolve at most once, and the account keeps no idempotency record for it.
-- Replies "=-" when nothing was expired.
local member = SCOPE .. '|' .. ARGV[6]
local score = redis.call('ZSCORE', KEYS[4], member)
if not score or tonumber(score) * 1000 > tonumber(NOW) then return '=-' end
local hf = 'h:' .. ARGV[6]
local a = redis.call('HMGET', KEYS[3], 's', 'p', 'h', 'v', 'f', 'n', 'o', hf)
local h = parse_hold(a[8])
if not a[1] or not h or h.s ~= 'pending' then
  redis.call('ZREM', KEYS[4], member)
  return '=-'
end
local acc = { s = a[1], p = tonumber(a[2]), h = tonumber(a[3]), v = tonumber(a[4]) + 1, f = a[5], n = a[6], o = a[7] }
local release = h.a - h.c
acc.h = acc.h - release
h.s = 'expired'
h.r = 1
redis.call('HSET', KEYS[3], 'h', acc.h, 'v', acc.v, hf, pack_hold(h))
redis.call('ZREM', KEYS[4], member)
return append('expire', hold_result(h), account_tail(acc, 0, -release, ARGV[6], h, 0, 'lease expired', ''))

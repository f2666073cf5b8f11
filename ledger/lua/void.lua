-- KEYS[3] account, KEYS[4] hold queue. ARGV[6] hold id, ARGV[7] reason.
-- Releases what was not captured; the captured part stays posted.
local r = replayed()
if r then return r end
local hf = 'h:' .. ARGV[6]
local acc, h = load_account(KEYS[3], hf)
if not acc then return refuse('unknown_account', 'no account ' .. SCOPE) end
if not h then return refuse('unknown_hold', 'no hold ' .. ARGV[6]) end
if h.s ~= 'pending' then return refuse('hold_not_pending', 'hold is ' .. h.s) end
local release = h.a - h.c
acc.h = acc.h - release
h.s = 'voided'
save_account(KEYS[3], acc, hf, h)
redis.call('ZADD', KEYS[4], retain_until(), SCOPE .. '|' .. ARGV[6])
return commit_account('void', hold_result(h), acc, 0, -release, ARGV[6], h, 0, ARGV[7], '')

-- KEYS[3] account, KEYS[4] hold queue. ARGV[6] hold id, ARGV[7] total.
-- Allowed on a frozen account so a running call finishes exactly.
local r = replayed()
if r then return r end
local hf = 'h:' .. ARGV[6]
local acc, h = load_account(KEYS[3], hf)
if not acc then return refuse('unknown_account', 'no account ' .. SCOPE) end
if not h then return refuse('unknown_hold', 'no hold ' .. ARGV[6]) end
if h.s ~= 'pending' then return refuse('hold_not_pending', 'hold is ' .. h.s) end
local total = tonumber(ARGV[7])
if total > h.a then return refuse('exceeds_hold', 'total ' .. total .. ' > hold ' .. h.a) end
if total < h.c then return refuse('bad_amount', 'total ' .. total .. ' < captured ' .. h.c) end
local post = total - h.c
local release = h.a - h.c
acc.p = acc.p - post
acc.h = acc.h - release
h.c = total
h.s = 'settled'
save_account(KEYS[3], acc, hf, h)
redis.call('ZADD', KEYS[4], retain_until(), SCOPE .. '|' .. ARGV[6])
return commit_account('settle', hold_result(h), acc, -post, -release, ARGV[6], h, post, '', '')

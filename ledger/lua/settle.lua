-- KEYS[3] account. ARGV[6] hold id, ARGV[7] total.
-- Allowed on a frozen account so a running call finishes exactly. The hold's queue entry stays until its
-- lease end, when the reaper drops it.
local acc, h, replay = load_account(KEYS[3], 'h:' .. ARGV[6])
if replay then return replay end
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
return commit_account('settle', hold_result(h), KEYS[3], acc, -post, -release, ARGV[6], h, post, '', '')

-- KEYS[3] account. ARGV[6] hold id, ARGV[7] reason.
-- Releases what was not captured; the captured part stays posted.
local acc, h, replay = load_account(KEYS[3], 'h:' .. ARGV[6])
if replay then return replay end
if not acc then return refuse('unknown_account', 'no account ' .. SCOPE) end
if not h then return refuse('unknown_hold', 'no hold ' .. ARGV[6]) end
if h.s ~= 'pending' then return refuse('hold_not_pending', 'hold is ' .. h.s) end
local release = h.a - h.c
acc.h = acc.h - release
h.s = 'voided'
return commit_account('void', hold_result(h), KEYS[3], acc, 0, -release, ARGV[6], h, 0, ARGV[7], '')

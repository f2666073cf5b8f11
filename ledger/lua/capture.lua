-- KEYS[3] account. ARGV[6] hold id, ARGV[7] amount.
-- Refused on a frozen or closed account: the call controller then hangs the call up.
local acc, h, replay = load_account(KEYS[3], 'h:' .. ARGV[6])
if replay then return replay end
local bad = active_or_refuse(acc)
if bad then return bad end
if not h then return refuse('unknown_hold', 'no hold ' .. ARGV[6]) end
if h.s ~= 'pending' then return refuse('hold_not_pending', 'hold is ' .. h.s) end
local amt = tonumber(ARGV[7])
if h.c + amt > h.a then
  return refuse('exceeds_hold', 'captured ' .. h.c .. ' + ' .. amt .. ' > hold ' .. h.a)
end
acc.p = acc.p - amt
acc.h = acc.h - amt
h.c = h.c + amt
return commit_account('capture', hold_result(h), KEYS[3], acc, -amt, -amt, ARGV[6], h, amt, '', '')

-- KEYS[3] account. ARGV[6] amount, ARGV[7] source, ARGV[8] reference.
local acc, _, replay = load_account(KEYS[3])
if replay then return replay end
local bad = active_or_refuse(acc)
if bad then return bad end
local amt = tonumber(ARGV[6])
acc.p = acc.p + amt
if acc.s == 'opened' then acc.s = 'active' end
return commit_account('deposit', balance(acc), KEYS[3], acc, amt, 0, '', nil, amt, ARGV[7], ARGV[8])

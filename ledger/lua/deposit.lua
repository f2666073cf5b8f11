-- KEYS[3] account. ARGV[6] amount, ARGV[7] source, ARGV[8] reference.
local r = replayed()
if r then return r end
local acc = load_account(KEYS[3])
local bad = active_or_refuse(acc)
if bad then return bad end
local amt = tonumber(ARGV[6])
acc.p = acc.p + amt
if acc.s == 'opened' then acc.s = 'active' end
save_account(KEYS[3], acc)
return commit_account('deposit', balance(acc), acc, amt, 0, '', nil, amt, ARGV[7], ARGV[8])

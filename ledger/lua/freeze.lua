-- KEYS[3] account. ARGV[6] reason. Freezing a frozen account changes nothing.
local r = replayed()
if r then return r end
local acc = load_account(KEYS[3])
if not acc then return refuse('unknown_account', 'no account ' .. SCOPE) end
if acc.s == 'closed' then return refuse('account_not_active', 'account is closed') end
acc.s = 'frozen'
save_account(KEYS[3], acc)
return commit_account('freeze', balance(acc), acc, 0, 0, '', nil, 0, ARGV[6], '')

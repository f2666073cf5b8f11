-- KEYS[3] account. ARGV[6] reason. Freezing a frozen account changes nothing.
local acc, _, replay = load_account(KEYS[3])
if replay then return replay end
if not acc then return refuse('unknown_account', 'no account ' .. SCOPE) end
if acc.s == 'closed' then return refuse('account_not_active', 'account is closed') end
acc.s = 'frozen'
return commit_account('freeze', balance(acc), KEYS[3], acc, 0, 0, '', nil, 0, ARGV[6], '')

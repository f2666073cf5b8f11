-- ARGV[6] reason. Freezing a frozen account changes nothing.
local a, replay = load_account()
if not a then return replay end
if not a[1] then return refuse('unknown_account', 'no account ' .. SCOPE) end
if a[1] == 'closed' then return refuse('account_not_active', 'account is closed') end
if a[1] == 'frozen' then return unchanged('=' .. a[2] .. '|' .. a[3] .. '|frozen') end
return commit_account('freeze', '=' .. a[2] .. '|' .. a[3] .. '|frozen', a, 'frozen', a[2], a[3], '0', '0',
  '0', ARGV[6], '')

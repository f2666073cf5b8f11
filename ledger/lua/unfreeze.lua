-- A frozen account returns to active; an open one is left as it is.
local a, replay = load_account()
if not a then return replay end
if not a[1] then return refuse('unknown_account', 'no account ' .. SCOPE) end
if a[1] == 'closed' then return refuse('account_not_active', 'account is closed') end
if a[1] ~= 'frozen' then return unchanged('=' .. a[2] .. '|' .. a[3] .. '|' .. a[1]) end
return commit_account('unfreeze', '=' .. a[2] .. '|' .. a[3] .. '|active', a, 'active', a[2], a[3], '0', '0',
  '0', '', '')

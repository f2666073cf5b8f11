-- ARGV[6] reason. Refused while anything is held or posted: refund first.
local a, replay = load_account()
if not a then return replay end
if not a[1] then return refuse('unknown_account', 'no account ' .. SCOPE) end
if tonumber(a[3]) > 0 then return refuse('account_not_empty', a[3] .. ' cents still held') end
if tonumber(a[2]) > 0 then
  return refuse('account_not_empty', a[2] .. ' cents still posted: refund them first')
end
return commit_account('close', '=' .. a[2] .. '|' .. a[3] .. '|closed', a, 'closed', a[2], a[3], '0', '0',
  '0', ARGV[6], '')

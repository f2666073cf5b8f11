-- ARGV[6] reason. Refused while anything is held or posted (refund first), or while a hold is pending:
-- one captured in full holds nothing but is a call still in progress (settle or void it first).
local a, replay = load_account()
if not a then return replay end
if not a[1] then return refuse('unknown_account', 'no account ' .. SCOPE) end
if a[1] == 'closed' then return unchanged('=' .. a[2] .. '|' .. a[3] .. '|closed') end
if tonumber(a[3]) > 0 then return refuse('account_not_empty', a[3] .. ' cents still held') end
if tonumber(a[2]) > 0 then
  return refuse('account_not_empty', a[2] .. ' cents still posted: refund them first')
end
-- The account's holds are its hash's "h:<hold id>" fields (resolved ones stay until compacted).
local fields = redis.call('HGETALL', OPKEY)
for i = 1, #fields, 2 do
  local name = fields[i]
  if string.sub(name, 1, 2) == 'h:' and string.match(fields[i + 1], '^%d+|%d+|(%a+)|') == 'pending' then
    return refuse('account_not_empty', 'hold ' .. string.sub(name, 3) .. ' still pending: settle or void it')
  end
end
return commit_account('close', '=' .. a[2] .. '|' .. a[3] .. '|closed', a, 'closed', a[2], a[3], '0', '0',
  '0', ARGV[6], '')

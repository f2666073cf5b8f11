-- ARGV[6] hold id, ARGV[7] reason.
-- Releases what was not captured; the captured part stays posted.
local a, replay = load_account('h:' .. ARGV[6])
if not a then return replay end
if not a[1] then return refuse('unknown_account', 'no account ' .. SCOPE) end
local ha, hc, hs, he, hr, hm = pending_hold(a)
if not ha then return hc end
local release = ha - hc
hs = 'voided'
return commit_account('void', '=' .. ha .. '|' .. hc .. '|' .. hs .. '|' .. he .. '|' .. hm, a, a[1], a[2],
  fmt('%d', a[3] - release), '0', release == 0 and '0' or fmt('%d', -release), '0', ARGV[7], '', ARGV[6], ha,
  hc, hs, he, hr, hm)

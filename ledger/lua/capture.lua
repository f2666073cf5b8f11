-- ARGV[6] hold id, ARGV[7] amount.
-- Refused on a frozen or closed account: the call controller then hangs the call up.
local a, replay = load_account('h:' .. ARGV[6])
if not a then return replay end
local bad = inactive(a)
if bad then return bad end
local ha, hc, hs, he, hr, hm = pending_hold(a)
if not ha then return hc end
local amt = ARGV[7]
local captured = hc + amt
if captured > tonumber(ha) then
  return refuse('exceeds_hold', 'captured ' .. hc .. ' + ' .. amt .. ' > hold ' .. ha)
end
hc = fmt('%d', captured)
local out = '-' .. amt
return commit_account('capture', '=' .. ha .. '|' .. hc .. '|' .. hs .. '|' .. he .. '|' .. hm, a, a[1],
  fmt('%d', a[2] - amt), fmt('%d', a[3] - amt), out, out, amt, '', '', ARGV[6], ha, hc, hs, he, hr, hm)

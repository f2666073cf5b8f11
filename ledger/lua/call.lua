-- No operation keys. ARGV[6] call record json, ARGV[7] call id.
local r = replayed()
if r then return r end
return commit('call', '=ok', ARGV[7] .. US .. ARGV[6])

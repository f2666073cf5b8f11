-- Shared by every ledger script (prepended at load time; account scripts also get _account.lua, call
-- records and blocks _record.lua).
-- KEYS[1] holds the idempotency record (the account hash for account operations, a string key for call
-- records and blocks), KEYS[2] journal stream of the partition, KEYS[3..] operation keys.
-- ARGV[1] scope (account id, call:<id> or blk:<facility>:<number>), ARGV[2] idempotency TTL (s), ARGV[3] op
-- id, ARGV[4] payload fingerprint (32 hex), ARGV[5] now (ms), ARGV[6..] operation arguments. (The client
-- sends the keys, scope and TTL of an account as one cached piece.)
-- Replies are one string: "=<result>" on success, "!<code>|<message>" on refusal (nothing changed).
--
-- Cost: every local function is a closure built again on each run, and every local of the chunk that a
-- function uses (an upvalue) adds about 0.1 us to that; so the preludes' functions read KEYS and ARGV
-- themselves and take the rest as arguments, and the scripts' bodies use the locals below.
local OPKEY, JOURNAL = KEYS[1], KEYS[2]
local SCOPE, TTL, OP_ID, FP, NOW = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]

-- The journal entry is one stream field "e": the values joined by US (\31), in a fixed order per kind
-- (ledger/journal.py decodes it). One field, built by one concatenation, is several times cheaper in
-- Redis' Lua and AOF than one stream field per value. Free text never contains control characters.
local US = '\31'

local function refuse(code, msg)
  return '!' .. code .. '|' .. msg
end

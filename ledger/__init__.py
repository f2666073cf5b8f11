"""Two-phase prepaid ledger: atomic Lua operations in Redis, journal synced exactly once to SQL."""

"""Key layout. Every key of one account and its journal partition share a hash tag, so each Lua script
touches exactly one Redis Cluster slot.

    apc:{Lpp}:a:<account>            hash   f n o s p h v c  (facility, number, owner, state, posted,
                                                              held, version, created ms)
                                            h:<hold id>      "amount|captured|status|expires|review|meta"
                                            o:<op id>        fingerprint(32) + ms(13) + first result
    apc:{Lpp}:accts                  set    account ids of the partition (reconcile, rebuild)
    apc:{Lpp}:hexp                   zset   "<account>|<hold>" scored by lease expiry (reaper queue)
    apc:{Lpp}:op:<scope>|<op_id>     string fingerprint + first result, for call records and blocks
    apc:{Lpp}:blk:<facility>|<number> string source of the block (the whole facility)
    apc:{Lpp}:blk:<facility>|<number>|<inmate>  string source of one inmate's block
    apc:{Lpp}:blki:<facility>|<number> hash  inmate -> source, the number's blocked inmates (listing)
    apc:{Lpp}:journal                stream one entry per successful operation (field "e")
"""

from __future__ import annotations

import hashlib
import zlib

PREFIX = "apc"


def partition_of(name: str, partitions: int) -> int:
    """Stable across processes and machines (unlike hash())."""
    return zlib.crc32(name.encode()) % partitions


def tag(partition: int) -> str:
    return f"{{L{partition:02d}}}"


def account_id_for(facility_id: str, number_e164: str) -> str:
    """Deterministic, so find_account needs no cross-slot index and open_account is naturally unique."""
    digest = hashlib.blake2b(f"{facility_id}\x00{number_e164}".encode(), digest_size=10).hexdigest()
    return f"ap_{digest}"


class Keys:
    """Key names for one partition."""

    __slots__ = ("accts", "base", "hexp", "journal", "partition")

    def __init__(self, partition: int) -> None:
        self.partition = partition
        self.base = f"{PREFIX}:{tag(partition)}:"
        self.journal = self.base + "journal"
        self.hexp = self.base + "hexp"
        self.accts = self.base + "accts"

    def account(self, account_id: str) -> str:
        return f"{self.base}a:{account_id}"

    def op(self, scope: str, op_id: str) -> str:
        return f"{self.base}op:{scope}|{op_id}"

    def block(self, facility_id: str, number_e164: str, inmate_id: str = "") -> str:
        """The facility's block for the number, or (inmate_id) one inmate's: same hash tag, so one EXISTS
        reads both."""
        tail = f"|{inmate_id}" if inmate_id else ""
        return f"{self.base}blk:{facility_id}|{number_e164}{tail}"

    def blocked_inmates(self, facility_id: str, number_e164: str) -> str:
        return f"{self.base}blki:{facility_id}|{number_e164}"


def call_scope(call_id: str) -> str:
    return f"call:{call_id}"


def block_scope(facility_id: str, number_e164: str, inmate_id: str = "") -> str:
    """A facility block's scope is unchanged since blocks began (its op records and fingerprints stay
    valid); an inmate's adds "/<inmate>" ("/" is in no id, so no two scopes meet)."""
    tail = f"/{inmate_id}" if inmate_id else ""
    return f"blk:{facility_id}:{number_e164}{tail}"


# --- Redis Cluster slot of a key (CRC16/XMODEM of the hash tag, mod 16384) ---------------------------

def _crc16_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return table


_CRC16 = _crc16_table()


def crc16(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC16[((crc >> 8) ^ byte) & 0xFF]
    return crc


def key_slot(key: str) -> int:
    raw = key.encode()
    start = raw.find(b"{")
    if start >= 0:
        end = raw.find(b"}", start + 1)
        if end > start + 1:
            raw = raw[start + 1:end]
    return crc16(raw) % 16384

#!/usr/bin/env python3
"""Drive the Capsule reference (PyPI qp-capsule 1.5.4) for tests and benchmarks.

  capsule-reference.py append DB KEYDIR N   seal N audit-like capsules after DB's head
  capsule-reference.py bench  DB KEYDIR N   the same, printing "sealed_per_second R"

KEYDIR holds the 32-byte seed `key` (and keyring.json), as conduit-audit writes them.
"""
import asyncio
import sys
import time
from pathlib import Path

from qp_capsule import Capsule, CapsuleType, Seal
from qp_capsule.chain import CapsuleChain
from qp_capsule.keyring import Keyring
from qp_capsule.storage import CapsuleStorage


async def append(db: Path, keydir: Path, n: int) -> float:
    storage = CapsuleStorage(db)
    chain = CapsuleChain(storage)
    seal = Seal(key_path=keydir / "key", keyring=Keyring(keydir / "keyring.json", key_path=keydir / "key"))
    start = time.perf_counter()
    for i in range(n):
        c = Capsule(type=CapsuleType.SYSTEM, domain="conduit")
        c.trigger.source = "python-reference"
        c.trigger.request = "service_register"
        c.outcome.status = "success"
        c.outcome.summary = f"python appended {i} é😀"
        c.outcome.metrics = {"ratio": 1.5e-07, "big": 1e16, "neg_zero": -0.0, "n": i}
        await chain.seal_and_store(c, seal=seal)
    elapsed = time.perf_counter() - start
    await storage.close()
    return elapsed


def main() -> int:
    if len(sys.argv) != 5 or sys.argv[1] not in ("append", "bench"):
        print(__doc__, file=sys.stderr)
        return 2
    cmd, db, keydir, n = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
    elapsed = asyncio.run(append(db, keydir, n))
    if cmd == "bench":
        print(f"sealed_per_second {n / elapsed:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The one content hash (stage reuse, cache keys, run ids) and the one stable seed of the
project. Ground floor: imports nothing of repo_ray, so every layer may use it.

Both are sha256 over a canonical text of their parts, so they are the same in every process
and on every machine (unlike `hash()`, which Python salts per process).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def _canonical(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        # raw content (a file's bytes) stands in by its digest: the key still changes with
        # every byte, and the JSON text stays small
        return {"sha256": hashlib.sha256(value).hexdigest()}
    return str(value)


def content_hash(*parts: Any, length: int = 16) -> str:
    """Hex digest of JSON-able parts (dict keys sorted; other objects by str(); bytes by their
    own sha256). Equal inputs give equal keys; any changed part changes the key."""
    text = json.dumps(parts, sort_keys=True, default=_canonical, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def stable_seed(*parts: object) -> int:
    """A 31-bit seed from any values (joined with ':'), the same in every process."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF

"""`python -m deploy.blobkey`: print a new key for EDT_BLOB_KEY (`id:base64`, 32 random bytes).

Rotation (docs/privacy.md): move the current EDT_BLOB_KEY into EDT_BLOB_KEYS (comma-separated), set the
new one as EDT_BLOB_KEY; what is written from then on is sealed with it, the retention runs reseal the
kept blobs, and the old key can leave EDT_BLOB_KEYS once a run reported nothing left under it.
"""

from __future__ import annotations

from shared.blobs import generate_key

if __name__ == "__main__":
    print(generate_key())

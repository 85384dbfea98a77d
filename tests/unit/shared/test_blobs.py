"""The blob store's sealing at rest (shared/blobs.py): what is on disk is never the plaintext, opens only
with the right key, fails on any change, and keys rotate."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from shared.blobs import (
    CHUNK,
    BlobStore,
    Keyring,
    KeySettingError,
    SealError,
    generate_key,
    parse_key,
    plain_size,
)

SIZES = (0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5)


def payload(size: int) -> bytes:
    """Readable text (so that a leak would show) of `size` bytes."""
    line = b"<Eleve Nom=\"MARTIN\" Prenom=\"L\xc3\xa9a\" DateNaissance=\"2012-03-04\"/>\n"
    return (line * (size // len(line) + 1))[:size]


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs", Keyring.generate())


@pytest.mark.parametrize("size", SIZES)
def test_blobs_are_sealed_at_rest_and_addressed_by_their_plaintext(store: BlobStore, size: int) -> None:
    data = payload(size)
    sha, n = store.put_bytes(data)
    assert (sha, n) == (hashlib.sha256(data).hexdigest(), size)
    on_disk = store.path(sha).read_bytes()
    assert b"MARTIN" not in on_disk and on_disk[:5] == b"EDTB1"
    assert store.read_bytes(sha) == data
    assert b"".join(store.iter_chunks(sha)) == data
    assert store.size(sha) == plain_size(store.path(sha)) == size


def test_a_sealed_blob_is_seekable_like_a_file(store: BlobStore) -> None:
    data = payload(3 * CHUNK + 5)
    sha, _ = store.put_bytes(data)
    with store.open(sha) as f:
        for start, length in ((0, 10), (CHUNK - 3, 7), (2 * CHUNK + 1, CHUNK), (3 * CHUNK, 100)):
            f.seek(start)
            assert f.read(length) == data[start:start + length]
        assert f.seek(0, os.SEEK_END) == len(data)


def test_any_change_to_a_sealed_blob_is_refused(store: BlobStore) -> None:
    data = payload(2 * CHUNK + 10)
    sha, _ = store.put_bytes(data)
    path = store.path(sha)
    sealed = path.read_bytes()
    for at in (30, len(sealed) // 2, len(sealed) - 1):  # header, a middle chunk, the last tag
        altered = bytearray(sealed)
        altered[at] ^= 0x01
        path.write_bytes(bytes(altered))
        with pytest.raises(SealError):
            store.read_bytes(sha)
    path.write_bytes(sealed[:-(10 + 16)])  # the last chunk cut off: the one before is not marked last
    with pytest.raises(SealError):
        store.read_bytes(sha)
    path.write_bytes(sealed)
    assert store.read_bytes(sha) == data


def test_a_blob_opens_only_with_its_key(tmp_path: Path) -> None:
    first = BlobStore(tmp_path, Keyring.generate())
    sha, _ = first.put_bytes(b"secret names")
    with pytest.raises(SealError, match="neither EDT_BLOB_KEY nor in EDT_BLOB_KEYS"):
        BlobStore(tmp_path, Keyring.generate()).read_bytes(sha)
    kid, key = parse_key(generate_key())
    impostor = Keyring(first.keyring.current, {first.keyring.current: key})  # same id, another key
    with pytest.raises(SealError):
        BlobStore(tmp_path, impostor).read_bytes(sha)


def test_key_rotation_retired_keys_open_and_reseal_moves_to_the_current_key(tmp_path: Path) -> None:
    old_key, new_key = generate_key(), generate_key()
    old = BlobStore(tmp_path, Keyring.parse(old_key))
    sha, _ = old.put_bytes(payload(CHUNK + 3))
    rotated = BlobStore(tmp_path, Keyring.parse(new_key, retired=old_key))
    assert rotated.read_bytes(sha) == payload(CHUNK + 3)
    assert rotated.keyring.key_id_of(rotated.path(sha)) == parse_key(old_key)[0]
    assert rotated.reseal(sha) is True
    assert rotated.reseal(sha) is False  # already under the current key
    assert rotated.keyring.key_id_of(rotated.path(sha)) == rotated.keyring.current
    assert BlobStore(tmp_path, Keyring.parse(new_key)).read_bytes(sha) == payload(CHUNK + 3)  # old key not needed


def test_a_blob_written_before_sealing_is_read_and_resealed(store: BlobStore) -> None:
    data = payload(5000)
    sha = hashlib.sha256(data).hexdigest()
    store.path(sha).parent.mkdir(parents=True, exist_ok=True)
    store.path(sha).write_bytes(data)  # as the store wrote it before sealing existed
    assert store.read_bytes(sha) == data and store.size(sha) == len(data)
    assert store.reseal(sha) is True
    assert b"MARTIN" not in store.path(sha).read_bytes()
    assert store.read_bytes(sha) == data


def test_reseal_never_replaces_a_blob_by_other_content(store: BlobStore) -> None:
    sha = hashlib.sha256(b"what the name says").hexdigest()
    store.path(sha).parent.mkdir(parents=True, exist_ok=True)
    store.path(sha).write_bytes(b"something else")
    with pytest.raises(SealError, match="does not hold what its name says"):
        store.reseal(sha)
    assert store.path(sha).read_bytes() == b"something else"


def test_load_caches_the_decoded_object_and_delete_forgets_it(store: BlobStore) -> None:
    sha, _ = store.put_bytes(b'{"a": 1}')
    calls: list[bytes] = []

    def decode(data: bytes) -> dict[str, int]:
        calls.append(data)
        return {"a": 1}

    assert store.load(sha, decode) is store.load(sha, decode)
    assert calls == [b'{"a": 1}']
    assert store.delete(sha) is True and not store.exists(sha)
    assert store.delete(sha) is False
    with pytest.raises(FileNotFoundError):
        store.load(sha, decode)


def test_key_settings_are_checked() -> None:
    with pytest.raises(KeySettingError, match="EDT_BLOB_KEY is not set"):
        Keyring.parse("")
    with pytest.raises(KeySettingError, match="32 bytes"):
        Keyring.parse("k1:" + "QUJD")
    with pytest.raises(KeySettingError, match="key id"):
        Keyring.parse("bad id!:" + generate_key().split(":")[1])
    kid, key = parse_key(generate_key().split(":")[1])  # a bare key: its id comes from its hash
    assert kid == hashlib.sha256(key).hexdigest()[:8]
    a, b = generate_key(), generate_key()
    ring = Keyring.parse(a, retired=f"{b}, ")
    assert ring.current == parse_key(a)[0] and set(ring.keys) == {parse_key(a)[0], parse_key(b)[0]}

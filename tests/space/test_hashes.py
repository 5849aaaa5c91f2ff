"""The on-disk hash table: built once, reused, and rebuilt when corrupt."""

from __future__ import annotations

import numpy as np

from blox_env import hashes


def test_cache_file_written_and_valid() -> None:
    hashes.all_hashes()
    path = hashes.hash_cache_path()
    assert path.is_file()
    loaded = hashes._load_cache(path)
    assert loaded is not None and loaded.shape == (91_125, 16)


def test_corrupt_or_stale_cache_is_rejected(tmp_path) -> None:
    good = hashes._digests().copy()
    bad = good.copy()
    bad[50000] ^= 1  # one flipped bit in a spot-checked row
    path = tmp_path / "h.npy"
    np.save(path, bad)
    assert hashes._load_cache(path) is None
    np.save(path, good[:10])
    assert hashes._load_cache(path) is None
    path.write_bytes(b"not numpy")
    assert hashes._load_cache(path) is None
    np.save(path, good)
    assert hashes._load_cache(path) is not None


def test_compute_slab_matches_table() -> None:
    slab = np.frombuffer(hashes._hash_slab(7), dtype=np.uint8).reshape(-1, 16)
    assert np.array_equal(slab, hashes._digests()[7 * 2025 : 8 * 2025])

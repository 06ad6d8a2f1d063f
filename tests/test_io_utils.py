"""Atomic writes keep the usual permissions; unreadable cache entries are reported, not fatal; digests."""

import os
import stat

import numpy as np
import pytest

from tfperceptual.io_utils import (CacheWarning, atomic_savez, atomic_write_json, atomic_write_text, digest, read_json,
                                   read_npz)


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_atomic_writes_get_the_permissions_of_a_plain_open(tmp_path, umask):
    """tempfile.mkstemp creates 0600 files; the written file must have 0666 & ~umask like open(path, 'w')."""
    old = os.umask(umask)
    try:
        for name, write in (("a.txt", lambda p: atomic_write_text(p, "x")),
                            ("b.json", lambda p: atomic_write_json(p, {"a": 1})),
                            ("c.npz", lambda p: atomic_savez(p, a=np.zeros(2)))):
            path = write(tmp_path / name)
            plain = tmp_path / f"plain_{name}"
            open(plain, "w").close()
            assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o666 & ~umask
    finally:
        os.umask(old)


def test_unusable_cache_files_give_none_and_a_warning_naming_them(tmp_path):
    assert read_json(tmp_path / "missing.json") is None and read_npz(tmp_path / "missing.npz") is None
    cases = {"cut.json": '{"a": 1', "list.json": "[1, 2]", "keys.json": '{"a": 1}'}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.warns(CacheWarning, match=name):
            assert read_json(tmp_path / name, required=("a", "b")) is None
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.warns(CacheWarning, match="bad.npz"):
        assert read_npz(tmp_path / "bad.npz") is None
    atomic_savez(tmp_path / "ok.npz", a=np.arange(3))
    with pytest.warns(CacheWarning, match="missing arrays"):
        assert read_npz(tmp_path / "ok.npz", required=("b",)) is None
    assert read_npz(tmp_path / "ok.npz", required=("a",))["a"].tolist() == [0, 1, 2]


def test_digest_depends_on_values_shape_and_dtype():
    a = np.arange(6, dtype=np.float32)
    assert digest(a) == digest(a.copy())
    assert len({digest(a), digest(a.reshape(2, 3)), digest(a.astype(np.float64)), digest(a + 1)}) == 4
    assert digest({"b": 1, "a": 2}) == digest({"a": 2, "b": 1})

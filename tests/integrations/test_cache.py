"""The per-user cache directory of the integrations."""

import os
import stat

import pytest

from batchsampler.integrations import cache_dir


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("XDG_CACHE_HOME", "BATCHSAMPLER_CACHE", "LOCALAPPDATA"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "home"


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.skipif(os.name == "nt", reason="POSIX layout and modes")
def test_default_is_under_the_users_home_and_private(home):
    path = cache_dir("tu")
    assert path == home / ".cache" / "batchsampler" / "tu"
    assert _mode(home / ".cache" / "batchsampler") == 0o700 and _mode(path) == 0o700


@pytest.mark.skipif(os.name == "nt", reason="POSIX layout and modes")
def test_xdg_cache_home_and_the_override(home, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir("tu") == tmp_path / "xdg" / "batchsampler" / "tu"
    monkeypatch.setenv("BATCHSAMPLER_CACHE", str(tmp_path / "mine"))
    assert cache_dir("tu") == tmp_path / "mine" / "tu"
    assert cache_dir() == tmp_path / "mine"
    assert not (home / ".cache").exists()


def test_not_a_shared_temporary_directory(home):
    import tempfile

    assert not str(cache_dir()).startswith(os.path.join(tempfile.gettempdir(), "batchsampler-cache"))


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0, reason="needs root to create another user's folder")
def test_a_base_owned_by_another_user_is_refused(tmp_path, monkeypatch):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    os.chown(foreign, 12345, 12345)
    monkeypatch.setenv("BATCHSAMPLER_CACHE", str(foreign))
    with pytest.raises(PermissionError, match="belongs to another user"):
        cache_dir("tu")

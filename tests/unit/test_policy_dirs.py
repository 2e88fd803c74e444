"""The host policy's directories: a root-only file in a directory someone else can write can be
swapped, so every directory from `/` down to it must be root's and not writable by group or
others (a sticky one may be, for root's entries), and a link on the way must be root's."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from conduit.errors import PolicyError
from conduit.spec.policy import load_policy, trusted_path

OTHER = 1000  # a uid that is not root (the tests run as root)


@pytest.fixture
def base():
    """A private directory under /tmp (sticky, root's entry): root's alone, mode 0700."""
    path = Path(tempfile.mkdtemp(prefix="conduit-policy-dirs-"))
    yield path
    shutil.rmtree(path)


def policy_in(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "host.yaml"
    path.write_text("max_containers: 7\n")
    path.chmod(0o600)
    return path


def test_a_policy_in_root_only_directories_loads(base):
    path = policy_in(base / "etc")
    assert load_policy(str(path))[0].max_containers == 7


def test_a_parent_others_can_write_is_refused_naming_it(base):
    path = policy_in(base / "etc")
    (base / "etc").chmod(0o777)
    with pytest.raises(PolicyError) as err:
        load_policy(str(path))
    assert str(err.value) == f"host policy {path}: directory {base / 'etc'} is writable by group or others; chmod go-w {base / 'etc'}"


def test_a_group_writable_grandparent_is_refused(base):
    path = policy_in(base / "etc" / "conduit")
    (base / "etc").chmod(0o775)
    with pytest.raises(PolicyError, match=f"directory {base / 'etc'} is writable by group or others"):
        load_policy(str(path))


def test_a_parent_owned_by_another_user_is_refused(base):
    path = policy_in(base / "etc")
    os.chown(base / "etc", OTHER, -1)
    with pytest.raises(PolicyError) as err:
        load_policy(str(path))
    assert str(err.value) == f"host policy {path}: directory {base / 'etc'} is owned by uid {OTHER}, not root; chown root {base / 'etc'}"


def test_a_sticky_directory_may_be_world_writable_for_roots_entry(base):
    sticky = base / "tmp"
    path = policy_in(sticky / "mine")
    sticky.chmod(0o1777)
    assert load_policy(str(path))[0].max_containers == 7
    assert trusted_path(str(path)) == str(path)


def test_a_sticky_directory_does_not_cover_another_users_entry(base):
    sticky = base / "tmp"
    path = policy_in(sticky / "theirs")
    sticky.chmod(0o1777)
    os.chown(sticky / "theirs", OTHER, -1)  # its owner may rename it away, even in a sticky directory
    with pytest.raises(PolicyError, match=f"directory {sticky} is writable by group or others"):
        load_policy(str(path))


def test_a_world_writable_directory_without_the_sticky_bit_is_refused_even_for_roots_entry(base):
    path = policy_in(base / "open" / "mine")
    (base / "open").chmod(0o777)
    with pytest.raises(PolicyError, match="chmod go-w"):
        load_policy(str(path))


def test_a_link_planted_by_another_user_is_refused(base):
    real = policy_in(base / "real")
    link = base / "etc"
    link.symlink_to(base / "real")
    os.lchown(link, OTHER, -1)
    with pytest.raises(PolicyError) as err:
        load_policy(str(link / "host.yaml"))
    assert f"{link} is a link owned by uid {OTHER}, not root" in str(err.value)
    assert "\n" not in str(err.value)
    assert load_policy(str(real))[0].max_containers == 7


def test_roots_links_are_followed_and_the_target_directories_checked(base):
    real = policy_in(base / "real")
    (base / "etc").symlink_to("real")  # relative
    (base / "file.yaml").symlink_to(real)
    assert trusted_path(str(base / "etc" / "host.yaml")) == str(real)
    assert load_policy(str(base / "file.yaml"))[0].max_containers == 7
    (base / "real").chmod(0o777)
    with pytest.raises(PolicyError, match=f"directory {base / 'real'} is writable"):
        load_policy(str(base / "etc" / "host.yaml"))


def test_a_link_loop_is_one_line(base):
    (base / "a").symlink_to("b")
    (base / "b").symlink_to("a")
    with pytest.raises(PolicyError, match="more than 40 links"):
        load_policy(str(base / "a" / "host.yaml"))


def test_a_missing_named_policy_is_still_no_such_file(base):
    with pytest.raises(PolicyError, match="no such file"):
        load_policy(str(base / "absent" / "host.yaml"))


def test_the_test_suites_own_policy_under_tmp_loads():
    from tests.helpers import stand_in_policy

    assert load_policy(stand_in_policy())[1].startswith("host policy ")

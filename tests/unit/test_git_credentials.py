"""A repository URL's credentials never reach a message, a log line or the state."""

from __future__ import annotations

import pytest

from conduit.state.git import GitError, fetch, public_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://bot:ghp_s3cret@github.com/o/specs.git", "https://***@github.com/o/specs.git"),
        ("https://ghp_s3cret@github.com/o/specs.git", "https://***@github.com/o/specs.git"),
        ("ssh://git@example.org:2222/specs.git", "ssh://***@example.org:2222/specs.git"),
        ("https://github.com/o/specs.git", "https://github.com/o/specs.git"),
        ("/srv/specs.git", "/srv/specs.git"),
        ("fatal: unable to access 'https://u:p@h/x/': refused", "fatal: unable to access 'https://***@h/x/': refused"),
    ],
)
def test_public_url_leaves_out_user_and_password(url, shown):
    assert public_url(url) == shown


def test_a_failed_fetch_does_not_show_the_password(tmp_path):
    with pytest.raises(GitError) as caught:
        fetch("https://bot:ghp_s3cret@127.0.0.1:9/specs.git", "main", tmp_path / "mirror")
    assert "ghp_s3cret" not in str(caught.value) and "bot:" not in str(caught.value)

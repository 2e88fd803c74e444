"""`conduit telegram setup`: connect the bot to this host."""

from __future__ import annotations

from pathlib import Path

import click

from conduit.cli.common import fail
from conduit.errors import EXIT_INVALID, AlertError, PolicyError
from conduit.features.telegram_setup import check_token, first_message, policy_lines, spec_lines
from conduit.features.v1import import ImportRefused, secret_files, write_secrets
from conduit.spec.policy import load_policy, matches


@click.group("telegram")
def telegram_group() -> None:
    """The Telegram bot: connect it to this host."""


def _token(token_file: str | None) -> str:
    if token_file:
        try:
            return Path(token_file).read_text().strip()
        except OSError as exc:
            fail(f"{token_file}: cannot read: {exc.strerror}; give the file @BotFather's token is in", EXIT_INVALID)
    return click.prompt("bot token from @BotFather", hide_input=True).strip()


@telegram_group.command("setup")
@click.option("--name", default="conduit", show_default=True, help="The cluster's name: the secret files are NAME-telegram-token and -chat.")
@click.option("--token-file", type=click.Path(dir_okay=False), help="Read the bot token from this file instead of asking.")
@click.option("--chat-id", type=int, help="The chat to use; without it, the first message someone sends the bot names it.")
@click.option("--api-url", default="https://api.telegram.org", show_default=True, help="The Bot API server (the host policy must allow it).")
@click.option("--wait", type=float, default=300, show_default=True, help="Seconds to wait for that first message.")
@click.option("--force", is_flag=True, help="Replace secret files that hold other values.")
def setup_command(name, token_file, chat_id, api_url, wait, force) -> None:
    """Check the bot token with Telegram, find the chat from your first message to the bot, write
    both as private files where the host policy allows secret files, and print the lines to add."""
    try:
        policy = load_policy()[0]
    except PolicyError as exc:
        fail(str(exc))
    if not matches(api_url.rstrip("/"), policy.telegram_api_urls):
        fail(f"{api_url} is not a Telegram API the host allows; add it to telegram_api_urls in the host policy", EXIT_INVALID)
    if not policy.secrets.file_dirs:
        fail("the host policy allows secret files nowhere (secrets.file_dirs is empty); add a directory to it")
    token = _token(token_file)
    try:
        bot = check_token(api_url, token)
        click.echo(f"token accepted: @{bot}")
        first = None
        if chat_id is None:
            click.echo(f"send any message to @{bot} now (from the chat the bot should answer in); waiting {wait:g} s")
            first = first_message(api_url, token, wait)
            if first is None:
                fail(f"no message reached @{bot} within {wait:g} s; send one and run setup again, or give --chat-id")
            chat_id = first.chat
    except AlertError as exc:
        fail(str(exc))
    token_path, chat_path = secret_files(name, Path(policy.secrets.file_dirs[0]))
    try:
        write_secrets({token_path: token + "\n", chat_path: f"{chat_id}\n"}, force)
    except ImportRefused as exc:
        fail(str(exc).replace("run import-v1 with --force", "run setup with --force"))
    click.echo(f"wrote {token_path} and {chat_path} (0600)")
    click.echo("\nadd to the spec:\n" + spec_lines(str(token_path), str(chat_path), api_url))
    click.echo("\nadd to the host policy (who the bot answers):\n" + policy_lines(first, chat_id))

"""The Telegram bot in the agent: commands with per-host buttons, confirmations, reports and
alerts, for every host of the fleet through the agents. The bot library (python-telegram-bot)
is imported only when a bot is configured, so an agent without one stays small."""

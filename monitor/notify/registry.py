"""Channel kind -> notifier class."""
from __future__ import annotations

from typing import TYPE_CHECKING

from monitor.choices import ChannelKind
from monitor.notify.base import Notifier
from monitor.notify.email import EmailNotifier
from monitor.notify.slack import SlackNotifier
from monitor.notify.webhook import WebhookNotifier

if TYPE_CHECKING:
    from monitor.models import Channel

NOTIFIERS: dict[str, type[Notifier]] = {
    ChannelKind.SLACK: SlackNotifier,
    ChannelKind.EMAIL: EmailNotifier,
    ChannelKind.WEBHOOK: WebhookNotifier,
}


def notifier_for(channel: Channel) -> Notifier:
    try:
        return NOTIFIERS[channel.kind](channel)
    except KeyError:
        raise ValueError(f"no notifier for channel kind {channel.kind!r}") from None

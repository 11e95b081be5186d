"""Email through Django's SMTP settings: a text and an HTML part, a subject that sorts
well, threading headers so an incident's messages stay together, and one Message-ID
(from the notification's idempotency key) across retries."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from monitor.models import Channel, Notification

import smtplib
import socket
import unicodedata

from django.conf import settings
from django.core.mail import BadHeaderError, EmailMultiAlternatives, get_connection

from monitor.notify import render
from monitor.notify.base import Notifier, NotifierError


class EmailNotifier(Notifier):
    def __init__(self, channel: Channel) -> None:
        super().__init__(channel)
        self.timeout_seconds = float(settings.EMAIL_TIMEOUT)

    def send(self, notification: Notification) -> None:
        recipients = self.channel.recipients
        if not recipients:
            raise NotifierError("the channel has no recipients", permanent=True)
        payload = notification.payload
        key = self.idempotency_key(notification)
        # One Message-ID for every attempt: mail systems and clients drop the repeat.
        headers = {"Auto-Submitted": "auto-generated", "X-Kafka-Monitor-Kind": header_text(str(payload["kind"])),
                   "Message-ID": render.email_message_id(key), "Idempotency-Key": key}
        thread = render.email_thread_id(payload)
        if thread:
            headers["References"] = header_text(thread)
            headers["In-Reply-To"] = header_text(thread)
        try:
            message = EmailMultiAlternatives(
                subject=header_text(render.email_subject(payload)), body=render.email_text(payload),
                from_email=settings.DEFAULT_FROM_EMAIL, to=recipients, headers=headers,
            )
            message.attach_alternative(render.email_html(payload), "text/html")
            message.message()  # build it now: a header it cannot carry fails this message alone
        except (BadHeaderError, ValueError) as exc:
            raise NotifierError(f"the message cannot be built: {exc}", of_message=True) from None
        try:
            connection = get_connection(fail_silently=False, timeout=self.timeout_seconds)
            message.connection = connection
            message.send(fail_silently=False)
        except smtplib.SMTPRecipientsRefused as exc:
            raise NotifierError(f"recipients refused: {', '.join(sorted(exc.recipients))}", permanent=True,
                                status_code=_first_code(exc.recipients)) from None
        except (smtplib.SMTPAuthenticationError, smtplib.SMTPSenderRefused, smtplib.SMTPNotSupportedError) as exc:
            raise NotifierError(f"SMTP refused: {_describe(exc)}", permanent=True,
                                status_code=getattr(exc, "smtp_code", None)) from None
        except smtplib.SMTPResponseException as exc:
            raise NotifierError(f"SMTP error: {_describe(exc)}", permanent=500 <= exc.smtp_code < 600,
                                status_code=exc.smtp_code) from None
        except (smtplib.SMTPException, OSError, socket.timeout) as exc:
            raise NotifierError(f"SMTP server unavailable: {_describe(exc)}") from None
        self.last_status_code = 250


def header_text(value: str) -> str:
    """A header value without line breaks or other control characters: a group named
    ``x\r\nBcc: ...`` injects no header (Django would refuse the whole message)."""
    return "".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in value)


def _first_code(recipients: dict) -> int | None:
    for code, _ in recipients.values():
        return code
    return None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        error = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        return f"{exc.smtp_code} {error}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__

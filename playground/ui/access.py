"""Who may use the page, and who may change it.

On this machine only (127.0.0.1, the default) anyone at the keyboard may do anything. A workshop on a LAN needs a
room password: each participant signs in with their name and it, and their name goes with their votes. Admin
actions (training, cancelling a run) then need the admin password; without one they are off.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass

import gradio as gr

from playground.errors import ConfigError

MAX_NAME = 40


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def same(typed: str | None, secret: str) -> bool:
    return hmac.compare_digest((typed or "").encode(), secret.encode())  # in constant time


@dataclass(frozen=True)
class Access:
    room_password: str | None = None  # set: the page asks each participant for their name and this
    admin_password: str | None = None  # set: admin actions ask for it
    workshop: bool = False  # served beyond this machine

    @classmethod
    def for_host(cls, host: str, room_password: str | None, admin_password: str | None) -> "Access":
        workshop = not is_loopback(host)
        if workshop and not room_password:
            raise ConfigError(
                f"--host {host} opens the playground to the network: set a room password with --room-password or "
                "PLAYGROUND_ROOM_PASSWORD (participants sign in with their name and it), or keep --host 127.0.0.1"
            )
        return cls(room_password or None, admin_password or None, workshop)

    def sign_in(self, name: str, password: str) -> bool:
        """Gradio's login check: a name (up to 40 characters) and the room password, or the admin password."""
        if not 0 < len(name.strip()) <= MAX_NAME or self.room_password is None:
            return False
        admin = self.admin_password is not None and same(password, self.admin_password)
        return same(password, self.room_password) or admin

    def launch_options(self) -> dict:
        if self.room_password is None:
            return {}
        return {"auth": self.sign_in,
                "auth_message": "Your name and the room password / 名前とルームのパスワードを入力してください"}

    @property
    def admin_needs_password(self) -> bool:
        return self.admin_password is not None

    def require_admin(self, typed: str | None) -> None:
        """Raise a page error unless an admin action is allowed with the password typed."""
        if self.admin_password is not None:
            if not same(typed, self.admin_password):
                raise gr.Error("This needs the admin password / 管理者パスワードが必要です")
        elif self.workshop:
            raise gr.Error("Training is off in this workshop: the host starts the app with --admin-password to allow it"
                           " / ワークショップでは管理者パスワードの設定が必要です")


def participant(request: gr.Request | None, typed: str | None) -> str | None:
    """The signed-in name when there is one (it cannot be changed in the page), else the name typed."""
    name = getattr(request, "username", None) if request is not None else None
    return name or (typed or "").strip() or None

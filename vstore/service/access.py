"""Who may do what to which cameras: roles, least privilege first, each principal scoped to
camera groups (``[groups.NAME]`` in vstore.toml).

A role includes every role before it: ``viewer`` sees cameras, timelines and plays footage;
``investigator`` also exports clips and snapshots; ``custodian`` also places and releases
holds and reads the audit log; ``operator`` also runs retention, tiering, imports and
checks, and reloads the configuration; ``admin`` also manages principals and tokens. The
group ``*`` is every camera of the node.
"""

from __future__ import annotations

from dataclasses import dataclass

from vstore.base.errors import UsageError
from vstore.store.config import StoreConfig
from vstore.store.holds import Hold, holds_by_ref, one_hold
from vstore.store.store import Store

ROLES = ("viewer", "investigator", "custodian", "operator", "admin")
ALL_CAMERAS = "*"

# What each action needs, at least.
_NEEDS = {
    "view": "viewer",
    "export": "investigator",
    "hold": "custodian",
    "audit": "custodian",
    "operate": "operator",
    "admin": "admin",
}


ACTIONS = tuple(_NEEDS)  # what a principal may be allowed, least first


def role_needed(action: str) -> str:
    """The least role allowed ``action``."""
    return _NEEDS[action]


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UsageError(f"unknown role {role!r} (roles: {', '.join(ROLES)})")
    return role


def check_groups(groups: list[str] | tuple[str, ...], config: StoreConfig) -> tuple[str, ...]:
    """Groups a principal is scoped to: each defined in vstore.toml, or ``*``."""
    if not groups:
        raise UsageError("give at least one camera group (or * for every camera)")
    unknown = [g for g in groups if g != ALL_CAMERAS and g not in config.groups]
    if unknown:
        known = ", ".join(sorted(config.groups)) or "none defined: add [groups.NAME] to vstore.toml"
        raise UsageError(f"unknown camera group(s) {', '.join(unknown)} (groups: {known})")
    return tuple(dict.fromkeys(groups))


@dataclass(frozen=True)
class Principal:
    """An authenticated client: a token's, an identity provider's, or the node's own user."""

    name: str
    role: str
    groups: tuple[str, ...]
    via: str  # "token:ID", "jwt:ISSUER", "local:UID"
    subject: str = ""  # an identity provider's `sub` for its user (unique there)

    def may(self, action: str) -> bool:
        if self.role not in ROLES:  # (an identity provider's user granted nothing here)
            return False
        return ROLES.index(self.role) >= ROLES.index(_NEEDS[action])

    def sees_all(self) -> bool:
        return ALL_CAMERAS in self.groups

    def cameras(self, config: StoreConfig) -> frozenset[str] | None:
        """The cameras in scope; None: every camera."""
        if self.sees_all():
            return None
        return frozenset(c for g in self.groups for c in config.groups.get(g, ()))

    def sees(self, camera_id: str, config: StoreConfig) -> bool:
        scope = self.cameras(config)
        return scope is None or camera_id in scope

    @property
    def key(self) -> str:
        """Who this is, stably: a token's id, or an identity provider's issuer and subject
        (names are free text: another token, or user, may carry the same one)."""
        if self.via.startswith("token:"):
            return self.via
        return f"{self.via}/{self.subject or self.name}"

    def as_actor(self, remote: str) -> dict[str, object]:
        """What an audit record says about who acted."""
        return {"principal": self.name, "role": self.role, "via": self.via, "remote": remote}


def hold_in_scope(store: Store, p: Principal, ref: int | str | None) -> Hold:
    """Hold ``ref`` (its number here or its name NODE:N; released ones too) if its camera is
    in the principal's scope; else NotFound, exactly as for a hold that does not exist."""
    return one_hold(ref, [h for h in holds_by_ref(store, ref) if p.sees(h.camera, store.config)])

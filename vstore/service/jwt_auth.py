"""Bearer JWTs from the city's identity provider (Keycloak or similar), verified against its
JWKS with PyJWT, their claims mapped to a role and camera groups by ``[auth.jwt]``:

    [auth.jwt]
    issuer = "https://sso.city.example/realms/city"
    audience = "vstore"
    jwks_url = "https://sso.city.example/realms/city/protocol/openid-connect/certs"
    name_claim = "preferred_username"
    role_claim = "roles"         # a string or a list of the provider's role names
    groups_claim = "groups"      # a string or a list of the provider's group names
    [auth.jwt.roles]             # provider role -> vstore role (the highest one counts)
    "police-detective" = "investigator"
    [auth.jwt.groups]            # provider group -> vstore camera group (default: the same name)
    "/districts/7" = "district-7"

A token that does not verify (signature, issuer, audience, expiry) is no principal (401); a
verified one that maps to no role or no group is one without rights (403 on everything).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from vstore.base.errors import ConfigError
from vstore.service.access import ROLES, Principal

_KEYS = {"issuer", "audience", "jwks_url", "name_claim", "role_claim", "groups_claim",
         "algorithms", "roles", "groups", "leeway_s"}  # fmt: skip


class JwtConfig(NamedTuple):
    issuer: str
    audience: str
    jwks_url: str
    name_claim: str = "preferred_username"
    role_claim: str = "roles"
    groups_claim: str = "groups"
    algorithms: tuple[str, ...] = ("RS256", "ES256", "EdDSA")
    roles: dict[str, str] = {}  # noqa: RUF012 - shared default, never mutated
    groups: dict[str, str] = {}  # noqa: RUF012 - shared default, never mutated
    leeway_s: float = 30.0


def parse_jwt_config(doc: Any, where: str) -> JwtConfig | None:
    """``[auth.jwt]`` (None when absent)."""
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise ConfigError(f"{where} [auth.jwt] must be a table")
    extra = set(doc) - _KEYS
    if extra:
        raise ConfigError(f"{where} [auth.jwt]: unknown key(s) {', '.join(sorted(extra))}")
    for key in ("issuer", "audience", "jwks_url"):
        if not isinstance(doc.get(key), str) or not doc[key]:
            raise ConfigError(f"{where} [auth.jwt]: give {key}")
    roles = doc.get("roles", {})
    if not isinstance(roles, dict) or any(r not in ROLES for r in roles.values()):
        raise ConfigError(f"{where} [auth.jwt.roles]: each value is one of {', '.join(ROLES)}")
    groups = doc.get("groups", {})
    if not isinstance(groups, dict) or not all(isinstance(v, str) for v in groups.values()):
        raise ConfigError(f"{where} [auth.jwt.groups]: each value is a camera group name")
    algorithms = doc.get("algorithms", list(JwtConfig._field_defaults["algorithms"]))
    if not isinstance(algorithms, list) or not algorithms or "none" in algorithms:
        raise ConfigError(f"{where} [auth.jwt]: algorithms is a list of signing algorithms")
    return JwtConfig(
        doc["issuer"],
        doc["audience"],
        doc["jwks_url"],
        str(doc.get("name_claim", "preferred_username")),
        str(doc.get("role_claim", "roles")),
        str(doc.get("groups_claim", "groups")),
        tuple(algorithms),
        dict(roles),
        dict(groups),
        float(doc.get("leeway_s", 30.0)),
    )


def _names(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


class JwtVerifier:
    """Verifies tokens of one provider; its keys fetched from the JWKS URL and cached."""

    def __init__(self, cfg: JwtConfig) -> None:
        import jwt  # PyJWT: only a node configured for an identity provider loads it

        self.cfg = cfg
        self._jwt = jwt
        self._keys = jwt.PyJWKClient(cfg.jwks_url, cache_keys=True, lifespan=300, timeout=5)

    def principal(self, token: str) -> Principal | None:
        jwt = self._jwt
        try:
            key = self._keys.get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=list(self.cfg.algorithms),
                audience=self.cfg.audience,
                issuer=self.cfg.issuer,
                leeway=self.cfg.leeway_s,
                # (sub: who it is, stably; a name claim need not be unique)
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except (jwt.PyJWTError, ValueError):
            return None
        cfg = self.cfg
        mapped = [cfg.roles.get(n) for n in _names(claims.get(cfg.role_claim))]
        held = [r for r in mapped if r is not None]
        role = max(held, key=ROLES.index) if held else None
        groups = tuple(cfg.groups.get(g, g) for g in _names(claims.get(cfg.groups_claim)))
        sub = str(claims["sub"])
        name = str(claims.get(cfg.name_claim) or sub)
        if role is None or not groups:
            # Verified, but granted nothing here: a principal without rights.
            return Principal(name, "none", (), f"jwt:{cfg.issuer}", sub)
        return Principal(name, role, groups, f"jwt:{cfg.issuer}", sub)

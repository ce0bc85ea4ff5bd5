"""Policy profiles as stored in Redis: JSON documents in the ``<prefix>profiles`` hash.

Never trust what is in Redis: a stored profile is validated as if a user had just stored
it. A malformed one (another process's bug, a hand edit) is an error for the requests that
name it (:class:`beamrouting.InvalidPolicyProfile`), not a crash.
"""

from __future__ import annotations

from typing import Final

import msgspec

from ..._core._errors import InvalidPolicyProfile, RoutingError
from ..._core._profiles import PolicyProfile, parse_profile

__all__ = ["StoredProfiles"]

_CACHE_SIZE: Final = 256


class StoredProfiles:
    """Parses stored profile documents, memoising each text's outcome in a bounded cache."""

    __slots__ = ("_cache",)

    def __init__(self) -> None:
        self._cache: dict[bytes, PolicyProfile | str] = {}

    @staticmethod
    def encode(profile: PolicyProfile) -> bytes:
        """The JSON document a profile is stored as."""
        return msgspec.json.encode(profile.to_dict())

    def parse(self, profile_id: str, text: bytes | str) -> PolicyProfile | InvalidPolicyProfile:
        """The profile stored as ``text``, or the :class:`InvalidPolicyProfile` it is (never raises)."""
        data = text.encode() if isinstance(text, str) else text
        cache = self._cache
        profile = cache.get(data)
        if profile is None:
            try:
                profile = parse_profile(msgspec.json.decode(data))
            except RoutingError as exc:
                profile = f"{exc.detail}"
            except (msgspec.DecodeError, UnicodeDecodeError):
                profile = "not a JSON document"
            except Exception as exc:  # any other failure to read it: still not a usable profile
                profile = f"unreadable ({type(exc).__name__})"
            if len(cache) >= _CACHE_SIZE:
                cache.clear()
            cache[data] = profile
        if isinstance(profile, str):
            return InvalidPolicyProfile(f"the stored policy profile {profile_id!r} is malformed: {profile}")
        return profile

    def load(self, profile_id: str, text: bytes | str) -> PolicyProfile:
        """:meth:`parse`, raising the :class:`InvalidPolicyProfile`."""
        profile = self.parse(profile_id, text)
        if isinstance(profile, InvalidPolicyProfile):
            raise profile
        return profile

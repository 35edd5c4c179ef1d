"""Every error pyi-selfupdate raises derives from :class:`SelfUpdateError`.

Messages name the problem and the fix, so they can be shown to people as they are.
"""

from __future__ import annotations


class SelfUpdateError(Exception):
    """Base class of every pyi-selfupdate error."""


class ConfigError(SelfUpdateError):
    """The update configuration is missing or wrong (build time or run time)."""


class InvalidNameError(SelfUpdateError, ValueError):
    """A version, cmd name or platform could escape its folder or URL segment."""


class ManifestError(SelfUpdateError):
    """A manifest could not be decoded or does not describe a usable release."""


class FetchError(SelfUpdateError):
    """A download failed: network error, HTTP error status, or a body over its limit."""


class PatchError(SelfUpdateError):
    """A bsdiff patch is corrupt or does not apply to the current file."""


class VerificationError(SelfUpdateError):
    """Downloaded bytes do not match what the release promises (hash, size, signature)."""


class InstallError(SelfUpdateError):
    """The new executable could not be put in place; the old one is kept."""


class ReleaseError(SelfUpdateError):
    """``pyi-selfupdate release`` refused its input; nothing was written."""


class SignatureError(VerificationError):
    """A signed-update check failed: unsigned, untrusted key, forged, mis-bound, expired or rolled back."""

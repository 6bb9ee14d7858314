"""Masking of credentials before anything is written to MLflow.

A sweep logs its overrides and its whole resolved config. Both can carry secrets: a tracking
URI with a password (`https://alice:s3cret@host`), a signed URL's query string, or a value
read from the environment with `${oc.env:...}` under a key named like a credential. Those
values are replaced by `***`; nothing is read from the environment here.
"""

from __future__ import annotations

import re
from typing import Dict, Iterable, List

MASK = "***"
# Key names whose values are credentials, matched case-insensitively anywhere in the key.
_SENSITIVE = r"(?:password|passwd|secret|token|api[_-]?key|access[_-]?key|credential|auth)"
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]+:)[^\s@/]+@")
# Query parameters of signed URLs also carry credentials as sig, signature or key.
_QUERY = re.compile(rf"(?P<head>[?&][^=&\s]*(?:{_SENSITIVE}|sig|key)[^=&\s]*=)[^&\s'\"]+", re.IGNORECASE)
_YAML_VALUE = re.compile(
    rf"^(?P<head>\s*[^\s:#]*{_SENSITIVE}[^\s:#]*:\s+)(?P<value>\S.*)$", re.IGNORECASE | re.MULTILINE
)
_KEY = re.compile(_SENSITIVE, re.IGNORECASE)


def redact_text(text: str) -> str:
    """`text` with URL passwords, credential query parameters and YAML values of
    credential-named keys replaced by `***`.

    Example: `uri: https://alice:s3cret@host/x?token=abc` -> `uri: https://alice:***@host/x?token=***`.
    """
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}@", text)
    text = _QUERY.sub(lambda m: f"{m['head']}{MASK}", text)
    return _YAML_VALUE.sub(lambda m: f"{m['head']}{MASK}", text)


def redact_overrides(overrides: Iterable[str]) -> List[str]:
    """Command-line overrides (`key=value`) with credential values masked."""
    masked = []
    for item in overrides:
        key, sep, value = item.partition("=")
        masked.append(f"{key}{sep}{MASK}" if sep and _KEY.search(key) else redact_text(item))
    return masked


def redact_params(params: Dict[str, str]) -> Dict[str, str]:
    """Params (`dotted.key: value`) with the values of credential-named keys, and credentials in values, masked."""
    return {
        key: MASK if _KEY.search(key.rsplit(".", 1)[-1]) else redact_text(str(value)) for key, value in params.items()
    }

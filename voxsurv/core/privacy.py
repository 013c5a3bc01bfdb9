"""Keep DICOM identifiers out of logs, reports and exclusion lists.

Lives at the bottom layer so ingestion, inference and the Deploy app share one rule.
"""

from __future__ import annotations

import logging
import re

# DICOM UIDs are dot-separated digit groups (PS3.5 9.1); four or more groups never occur in our
# own numbers (spacings, versions), so this keeps them out of logs, reports and exclusion lists.
_UID = re.compile(r"(?<![\w.])\d+(?:\.\d+){3,}(?!\d)")


def redact(text: str) -> str:
    """``text`` with anything shaped like a DICOM UID replaced by ``<UID>``."""
    return _UID.sub("<UID>", str(text))


class RedactingFilter(logging.Filter):
    """Logging filter that redacts DICOM UIDs from every record (installed by ``voxsurv predict``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        clean = redact(msg)
        if clean != msg:
            record.msg, record.args = clean, None
        return True

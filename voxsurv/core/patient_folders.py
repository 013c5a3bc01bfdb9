"""One output folder per patient, named so that two patients never share one.

A patient id is kept as the folder name where that is safe on every file system a clinic uses
(lower-case ASCII letters, digits, ``.``, ``_``, ``-``; at most 64 characters; not a name Windows
reserves). Any other id (upper case, which macOS and Windows fold; spaces; ``/``; non-ASCII such
as ``患者A``) becomes a readable ASCII part plus ``_`` and 10 hex digits of the id's sha256, so
``患者A`` and ``病人A`` get different folders and the same id always gets the same folder (resume).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

_SAFE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
HASH_DIGITS = 10


def is_safe_folder_name(patient_id: str) -> bool:
    """True when ``patient_id`` can be a folder name as it is, on every common file system."""
    pid = str(patient_id)
    return (bool(_SAFE.fullmatch(pid)) and not pid.endswith(".") and ".." not in pid
            and pid.split(".")[0] not in _WINDOWS_RESERVED)


def patient_folder_name(patient_id: str) -> str:
    """The folder name of a patient: the id where safe, else ``<ascii part>_<sha256[:10]>``."""
    pid = str(patient_id)
    if is_safe_folder_name(pid):
        return pid
    ascii_part = unicodedata.normalize("NFKD", pid).encode("ascii", "ignore").decode("ascii").lower()
    ascii_part = re.sub(r"[^a-z0-9._-]+", "-", ascii_part).strip("-._")[:40].rstrip("-._") or "patient"
    return f"{ascii_part}_{hashlib.sha256(pid.encode('utf-8')).hexdigest()[:HASH_DIGITS]}"

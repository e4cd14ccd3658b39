"""The ``tarfile`` module with the extraction filters (PEP 706) on every supported Python.

``tarfile.data_filter``, ``FilterError`` and ``TarInfo.replace`` arrived in
Python 3.11.4; Debian 12's python3 is 3.11.2. There the same code comes from
``backports.tarfile`` (CPython's tarfile, released separately), so archive
uploads make the same checks on every supported interpreter. The filesystem
package imports ``tarfile`` from here only, so headers it builds and members it
reads are always of the one module's classes.
"""

from __future__ import annotations

import tarfile as _stdlib
from typing import TYPE_CHECKING

if TYPE_CHECKING or hasattr(_stdlib, "data_filter"):
    import tarfile
else:  # pragma: no cover - depends on the interpreter's patch level
    import backports.tarfile as tarfile

__all__ = ["tarfile"]

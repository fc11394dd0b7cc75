"""`sandbox://`: an fsspec protocol other than `file`, for the fsspec storage tests.

memory:// lives in one process, and Ray workers are other processes. This filesystem keeps its
files in a local directory instead (`root`, from fsspec's config), so every worker on this
machine sees the same files, while taskray reaches it through fsspec like gs:// or az://. The
instance pickles as its constructor arguments, `root` and `secret` included, as a cloud
filesystem's do with its credentials.
"""

from __future__ import annotations

import fsspec
from fsspec.implementations.dirfs import DirFileSystem
from fsspec.implementations.local import LocalFileSystem

PROTOCOL = "sandbox"


class SandboxFileSystem(DirFileSystem):
    protocol = PROTOCOL

    def __init__(self, root: str, secret: str | None = None, **kwargs):
        # auto_mkdir: an object store has no directories to create before writing a key
        super().__init__(path=root, fs=LocalFileSystem(auto_mkdir=True), **kwargs)
        self.secret = secret  # stands for a credential: it must never reach a log or an output


fsspec.register_implementation(PROTOCOL, SandboxFileSystem, clobber=True)

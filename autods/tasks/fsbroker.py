"""The embedded broker and result store: kombu's filesystem transport with atomic message
files, and Celery's file result backend with a counter that joins chords.

kombu creates a message file and then writes it, so a consumer listing the folder in
between can take an empty file and fail to decode it. Here the message is written under a
``.part`` name (which consumers skip, as it does not end in ``.msg``) and renamed into
place once complete.
"""

from __future__ import annotations

import fcntl
import os
import uuid
from time import monotonic

from celery.backends.filesystem import FilesystemBackend
from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs) -> None:
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = final + ".part"
        try:
            with open(partial, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel


class ResultBackend(FilesystemBackend):
    """Chords joined the way Redis joins them: each header task adds one to the chord's
    counter as it stores its result, and the one that reaches the header's size sends the
    callback. Without a counter Celery joins by ``celery.chord_unlock`` polling the header,
    a task and up to a retry interval after the last header task, twice per batch."""

    implements_incr = True

    def incr(self, key: bytes) -> int:
        """One more on the counter in ``key``'s file, under an exclusive lock on it, so
        header tasks in different processes count each once."""
        fd = os.open(self._filename(key), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            value = int(os.pread(fd, 32, 0) or b"0") + 1
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(value).encode(), 0)
            return value
        finally:
            os.close(fd)  # closing releases the lock

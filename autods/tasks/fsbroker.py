"""The embedded broker and result store: kombu's filesystem transport with atomic message
files, and Celery's file result backend with a prompt first chord check.

kombu creates a message file and then writes it, so a consumer listing the folder in
between can take an empty file and fail to decode it. Here the message is written under a
``.part`` name (which consumers skip, as it does not end in ``.msg``) and renamed into
place once complete.
"""

from __future__ import annotations

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
    """Files have no atomic counter, so a chord is joined by ``celery.chord_unlock`` polling
    its header. ``chord.run`` sends the first poll a fixed second late, which on one machine
    is most of a batch's shard step; it is sent after the configured retry interval."""

    def fallback_chord_unlock(self, header_result, body, countdown=1, **kwargs) -> None:
        super().fallback_chord_unlock(header_result, body,
                                      countdown=self.app.conf.result_chord_retry_interval,
                                      **kwargs)

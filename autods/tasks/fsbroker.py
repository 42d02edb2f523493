"""The embedded broker and result store: kombu's filesystem transport with atomic message
files, and Celery's file result backend with chords joined by counting.

kombu creates a message file and then writes it, so a consumer listing the folder in
between can take an empty file and fail to decode it. Here the message is written under a
``.part`` name (which consumers skip, as it does not end in ``.msg``) and renamed into
place once complete.

An exchange's table of bound queues has the same gap: kombu creates the file, then locks
and writes it, and a process binding or publishing to the same exchange in between (the
CLI sending a build's first tasks while its worker declares its queues) locks first and
reads an empty table that does not decode. Here the table comes into being whole: an empty
list written aside and linked into place, which only the first of racing processes does.
"""

from __future__ import annotations

import fcntl
import os
import uuid
from time import monotonic

from celery import maybe_signature
from celery.backends.filesystem import FilesystemBackend
from celery.exceptions import ChordError
from celery.result import GroupResult, allow_join_result
from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _queue_bind(self, exchange, routing_key, pattern, queue) -> None:
        table = self._exchange_file(exchange)
        if not table.exists():
            self.control_folder.mkdir(exist_ok=True)
            partial = table.with_name(f"{table.name}.{uuid.uuid4()}.part")
            try:
                partial.write_bytes(b"[]")
                os.link(partial, table)  # never replaces: the first table stays
            except FileExistsError:
                pass
            except OSError as exc:
                raise ChannelError(f"Cannot create {table}") from exc
            finally:
                partial.unlink(missing_ok=True)
        super()._queue_bind(exchange, routing_key, pattern, queue)

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
    """Chords joined when their last header task returns, as Redis joins them, instead of
    by ``celery.chord_unlock`` polling the header: a task per poll, sent with a countdown,
    which on one machine added up to a few tenths of a second per chord when a poll came
    early (the first build's shard step took 0.1 s or 0.5 s by that luck alone).

    Each header task records its id in the chord's file under an exclusive lock, and the
    one that finds every task recorded joins the results and sends the callback. Nothing is
    deleted after (the run's results go with the next run), so a header task delivered again
    (its process died before the acknowledgement) is counted once, and if it finds the
    header complete it sends the callback again, in case the process that completed it
    died before sending; callbacks are idempotent, as under any redelivery.
    """

    implements_incr = True  # the group is saved for joining, no chord_unlock is sent

    def on_chord_part_return(self, request, state, result, **kwargs) -> None:
        if not request.group or not request.chord:
            return
        callback = maybe_signature(request.chord, app=self.app)
        header = GroupResult.restore(request.group, backend=self)
        if header is None:
            self.chord_error_from_stack(callback, ChordError(
                f"the results of chord {request.group} are gone"))
            return
        size = request.chord.get("chord_size") or len(header)
        if self.count_returned(self.get_key_for_chord(request.group), request.id) < size:
            return
        try:
            with allow_join_result():
                joined = header.join(timeout=self.app.conf.result_chord_join_timeout,
                                     propagate=True)
        except Exception as exc:
            self.chord_error_from_stack(callback, ChordError(f"a header task failed: {exc!r}"))
            return
        callback.delay(joined)

    def count_returned(self, key: bytes, task_id: str) -> int:
        """How many distinct header tasks have returned, ``task_id`` included: their ids, a
        line each in ``key``'s file, read and added to under an exclusive lock."""
        line = task_id.encode()
        fd = os.open(self._filename(key), os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            returned = set(os.pread(fd, os.fstat(fd).st_size, 0).splitlines())
            if line not in returned:
                os.write(fd, line + b"\n")
                returned.add(line)
            return len(returned)
        finally:
            os.close(fd)  # closing releases the lock

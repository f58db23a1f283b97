"""The embedded file-system broker of ``bin/run``, whose messages appear whole.

kombu's file-system transport creates ``<name>.<queue>.msg`` and then writes it. A worker
listing the folder in between takes the empty file, cannot decode it and stops
("Unrecoverable error: JSONDecodeError"), and the message is gone. Here a message is
written under a name no queue reads and renamed into place: a rename within a folder is
atomic, so a worker sees either no message or all of it.
"""

import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes


class Channel(filesystem.Channel):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # kombu lists the queue folder before it writes and fails when it is missing: a
        # fresh var/, or one cleared while processes run. Every channel makes sure of them.
        for folder in (
            self.data_folder_in,
            self.data_folder_out,
            self.processed_folder,
            self.control_folder,
        ):
            os.makedirs(folder, exist_ok=True)

    def _put(self, queue, payload, **kwargs):
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # "<name>.part": _get matches what follows the first dot against "<queue>.msg".
        partial = os.path.join(self.data_folder_out, f"{name.partition('.')[0]}.part")
        try:
            with open(partial, "wb", buffering=0) as file:
                file.write(str_to_bytes(filesystem.dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel

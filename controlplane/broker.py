"""The embedded broker: kombu's filesystem transport with atomic message files.

TRICKY: kombu's own ``_put`` creates the message file and then writes it, while ``_get`` moves
and reads any file with the right name without taking the lock. A consumer polling every 20 ms
regularly finds a file that is still empty, fails to decode it and the worker dies
("Unrecoverable error: JSONDecodeError"). Writing to a hidden temporary name and renaming it
into place (atomic on one filesystem) means a consumer only ever sees complete messages.
"""

import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # A leading dot: _get never picks it up (it matches "<stamp>_<uuid>.<queue>.msg").
        temporary = os.path.join(self.data_folder_out, f".{name}.tmp")
        try:
            with open(temporary, "wb") as fh:
                fh.write(str_to_bytes(dumps(payload)))
            os.replace(temporary, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel


def install() -> None:
    """Make ``filesystem://`` URLs use this transport in this process."""
    from kombu.transport import TRANSPORT_ALIASES

    TRANSPORT_ALIASES["filesystem"] = "controlplane.broker:Transport"

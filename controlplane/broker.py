"""Two kombu transports with a fix each: the embedded broker (filesystem, atomic message files)
and Redis (a worker that survives losing its broker).

TRICKY: kombu's own ``_put`` creates the message file and then writes it, while ``_get`` moves
and reads any file with the right name without taking the lock. A consumer polling every 20 ms
regularly finds a file that is still empty, fails to decode it and the worker dies
("Unrecoverable error: JSONDecodeError"). Writing to a hidden temporary name and renaming it
into place (atomic on one filesystem) means a consumer only ever sees complete messages.
"""

import os
import uuid
from time import monotonic

import redis
from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.transport import redis as kombu_redis
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


class RedisChannel(kombu_redis.Channel):
    """TRICKY: when the worker loses Redis (a restart, kill -9), Celery 5.7's consumer first
    ``collect()``s the connection, which drops the transport's link to it
    (``transport.client = None``), then closes it; closing the channel tries to give back the
    unacknowledged messages, builds a Redis client from ``transport.client`` and fails with
    ``AttributeError: 'NoneType' object has no attribute 'hostname'`` — not a connection error,
    so the worker stopped for good ("Unrecoverable error"; found by
    tests/faults/test_services_broker.py). Saying "no connection" instead lets the close
    ignore it and the worker reconnect. The messages lost that way are not lost work: the rows
    are the truth and the sweepers send again what was never done."""

    def _connparams(self, asynchronous=False):
        if self.connection.client is None:
            raise redis.exceptions.ConnectionError("the broker connection is already closed")
        return super()._connparams(asynchronous=asynchronous)


class RedisTransport(kombu_redis.Transport):
    Channel = RedisChannel


def install() -> None:
    """Make ``filesystem://`` and ``redis://`` URLs use these transports in this process."""
    from kombu.transport import TRANSPORT_ALIASES

    TRANSPORT_ALIASES["filesystem"] = "controlplane.broker:Transport"
    TRANSPORT_ALIASES["redis"] = "controlplane.broker:RedisTransport"
    TRANSPORT_ALIASES["rediss"] = "controlplane.broker:RedisTransport"

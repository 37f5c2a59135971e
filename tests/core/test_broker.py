"""The embedded broker never hands a consumer a half-written message."""

import threading

from kombu import Connection

import controlplane.broker  # noqa: F401 - installs the transport


def test_concurrent_producer_and_consumer_lose_and_break_nothing(tmp_path):
    folder = tmp_path / "q"
    folder.mkdir()
    options = {
        "data_folder_in": str(folder),
        "data_folder_out": str(folder),
        "control_folder": str(tmp_path / "control"),
        "store_processed": False,
        "polling_interval": 0.001,
    }
    n = 400
    received = []

    def produce():
        with Connection("filesystem://", transport_options=options) as conn:
            queue = conn.SimpleQueue("race")
            for i in range(n):
                queue.put({"i": i, "pad": "x" * 20000})
            queue.close()

    with Connection("filesystem://", transport_options=options) as conn:
        assert type(conn.transport).__module__ == "controlplane.broker"
        queue = conn.SimpleQueue("race")
        producer = threading.Thread(target=produce)
        producer.start()
        while len(received) < n:
            message = queue.get(timeout=10)  # a half-written file would raise here
            received.append(message.payload["i"])
            message.ack()
        producer.join()
        queue.close()
    assert sorted(received) == list(range(n))

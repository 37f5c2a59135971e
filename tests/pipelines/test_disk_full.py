"""A job log whose volume is full (/dev/full answers every write with ENOSPC, as a full disk
does): the writer keeps what it wrote, drops the rest, says "Disk full" with the path, once.
The whole path (a real worker, a real full tmpfs): tests/faults/test_services_disk_full.py."""

from pathlib import Path

from apps.pipelines.logs import LogWriter

DEV_FULL = Path("/dev/full")


def test_a_log_on_a_full_disk_says_so_once_and_drops_the_rest():
    told = []
    log = LogWriter(DEV_FULL, secrets=["s3cr3t-value"])
    log.on_full = lambda: told.append(log.full)
    log.write(b"first line with s3cr3t-value\n")
    log.write(b"x" * 1000)
    log.line("job failed")
    log.close()  # nothing buffered is left to fail on again
    assert told == [log.full]
    assert log.full == f"Disk full: cannot write the job log {DEV_FULL} (No space left on device)."
    assert log.bytes_written == 0
    assert log.dropped > 1000


def test_a_log_with_room_is_written_whole(tmp_path):
    log = LogWriter(tmp_path / "1" / "2.log")
    log.write(b"hello\n")
    log.close()
    assert not log.full
    assert (tmp_path / "1" / "2.log").read_bytes() == b"hello\n"
    assert log.bytes_written == 6

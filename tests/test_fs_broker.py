"""The embedded file-system broker of ``bin/run`` (``iofold.lib.fs_broker``)."""

from kombu import Connection


def test_a_task_is_sent_and_received_on_folders_that_do_not_exist_yet(tmp_path):
    """Before: the first message sent from a fresh (or cleared) var/ failed with
    FileNotFoundError on the queue folder whenever nothing had created it first."""
    folders = {
        "data_folder_in": str(tmp_path / "broker" / "queue"),
        "data_folder_out": str(tmp_path / "broker" / "queue"),
        "processed_folder": str(tmp_path / "broker" / "processed"),
        "control_folder": str(tmp_path / "broker" / "control"),
    }
    with Connection(
        "filesystem://", transport="iofold.lib.fs_broker:Transport", transport_options=folders
    ) as connection:
        queue = connection.SimpleQueue("celery")
        queue.put({"task": "ping"})
        message = queue.get(timeout=5)
        message.ack()
        queue.close()

    assert message.payload == {"task": "ping"}

"""The embedded file-system broker of ``bin/run`` (``iofold.lib.fs_broker``)."""

import shutil

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


def test_the_first_task_sent_from_a_fresh_var_folder_is_queued(tmp_path, monkeypatch):
    """What ``bin/run`` and ``seed_demo`` do on a fresh clone: send a task, and answer
    /healthz, before anything has made var/broker/ (no hook makes it: the channel does)."""
    from iofold.celery import app
    from iofold.health import check_broker

    broker = tmp_path / "var" / "broker"
    monkeypatch.setenv("CELERY_BROKER_URL", "filesystem://")
    monkeypatch.setitem(app.conf, "broker_url", "filesystem://")
    monkeypatch.setitem(app.conf, "broker_transport", "iofold.lib.fs_broker:Transport")
    monkeypatch.setitem(
        app.conf,
        "broker_transport_options",
        {
            "data_folder_in": str(broker / "queue"),
            "data_folder_out": str(broker / "queue"),
            "processed_folder": str(broker / "processed"),
            "control_folder": str(broker / "control"),
            "store_processed": False,
        },
    )
    # The app's pools hold connections made from the configured broker: new ones.
    monkeypatch.setattr(app, "_pool", None)
    monkeypatch.setattr(app.amqp, "_producer_pool", None)

    app.send_task("traces.tasks.fill_agent_responses_task", args=(1, ["t"]))
    assert [p.suffix for p in (broker / "queue").iterdir()] == [".msg"]

    shutil.rmtree(tmp_path / "var")  # cleared while the processes run
    assert check_broker() == (True, "ok")

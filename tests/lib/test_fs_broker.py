"""bin/run's embedded broker: a worker polling while a message is written never reads half."""

import pytest
from django.conf import settings
from kombu.transport import filesystem

from iofold.celery import app

pytestmark = pytest.mark.skipif(
    settings.CELERY_BROKER_URL != "filesystem://", reason="the embedded broker only"
)


def test_a_worker_polling_mid_write_gets_nothing_then_the_whole_message(tmp_path, monkeypatch):
    folders = {
        "data_folder_in": str(tmp_path),
        "data_folder_out": str(tmp_path),
        "store_processed": False,
    }
    monkeypatch.setitem(app.conf, "broker_transport_options", folders)
    with app.connection_for_write() as producer, app.connection_for_write() as worker:
        encode = filesystem.dumps
        seen_mid_write = []

        def encode_while_a_worker_polls(payload):
            # The payload is encoded once the file is open: the worker polls right then.
            try:
                seen_mid_write.append(worker.default_channel._get("default"))
            except filesystem.Empty:
                seen_mid_write.append(None)
            return encode(payload)

        monkeypatch.setattr(filesystem, "dumps", encode_while_a_worker_polls)
        producer.default_channel._put("default", {"task": "sync", "id": 1})
        monkeypatch.setattr(filesystem, "dumps", encode)

        assert seen_mid_write == [None]
        assert worker.default_channel._get("default") == {"task": "sync", "id": 1}
        with pytest.raises(filesystem.Empty):
            worker.default_channel._get("default")

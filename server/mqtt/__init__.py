"""The server's MQTT side: ``bridge`` is the transport, ``handlers`` what each message does,
``lists`` the retained access list each unit holds."""

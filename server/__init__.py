"""The Telecentre central server: MQTT bridge, SQLite store, access lists, API, live page."""

__version__ = "0.1.0"

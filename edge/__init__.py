"""The Telecentre edge agent: reads badges and room sensors, drives the door, reports."""

__version__ = "0.1.0"

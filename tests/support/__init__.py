"""Test support: real Postgres databases, an Azurite emulator, and service processes started for the tests."""

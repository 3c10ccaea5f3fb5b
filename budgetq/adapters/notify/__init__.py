"""Webhook targets of notifications: parsing them from the settings, and sending one message."""

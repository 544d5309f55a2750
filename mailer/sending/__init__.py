"""Sending: campaigns, the delivery ledger, message building, rate limiting and transports."""

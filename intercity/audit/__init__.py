"""The change audit log: capture, redaction, hash chain, queries and notifications."""

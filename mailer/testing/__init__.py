"""Tools for tests and benchmarks: an SES-compatible HTTP sink (python -m mailer.testing.ses_sink)."""

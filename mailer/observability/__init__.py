"""Metrics and logs: the process's counters (``metrics``), what is read at scrape time from the database
and the queue (``collector``), a worker's metrics port (``exporter``) and JSON log lines (``logs``)."""

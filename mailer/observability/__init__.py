"""Metrics and logs: the process's counters (``metrics``), a worker's metrics port (``exporter``) and JSON
log lines (``logs``). A base layer: the send path and the webhook count here; what is read from the
database and the queue at scrape time belongs to the web front end (``mailer.web.collector``)."""

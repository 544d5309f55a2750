"""SES feedback (bounces, complaints, deliveries) arriving through SNS, applied to the subscriber lists.

sns.py         parse + verify an SNS HTTP message (pure given the certificate and the time)
sns_hosts.py   which URLs are SNS's; certificate sources (HTTPS, cached, a folder); the SubscribeURL visit
ses_events.py  SES notification JSON -> typed, frozen events (pure; the types in events.py)
policy.py      events -> actions: suppress, count a soft bounce, unsubscribe (pure)
apply.py       the flow: verify, store the raw message once (dedupe), apply, in one transaction
queries.py     the SQL: raw messages stored and found, subscriber facts, the ledger rows feedback names
effects.py     actions carried out through subscribers' services, ledger marks and campaign health
results.py     what a message did: its result and changes, in lines for a human
samples.py     SES-shaped bounce/complaint notifications for the demo (pure)
"""

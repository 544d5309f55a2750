"""SES feedback (bounces, complaints, deliveries) arriving through SNS, applied to the subscriber lists.

sns.py         parse + verify an SNS HTTP message (pure given the certificate and the time)
ses_events.py  SES notification JSON -> typed, frozen events (pure)
policy.py      events -> actions: suppress, count a soft bounce, unsubscribe (pure)
apply.py       store the raw message once (dedupe), apply the actions through subscribers' services
samples.py     SES-shaped bounce/complaint notifications for the demo (pure)
"""

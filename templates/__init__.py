"""The packaged templates (installed as ``mailer.templates``): email/ (MJML and text), web/ (pages),
topics.yaml (the topic registry). Found through importlib.resources; ``NEWSLETTER_TEMPLATES_DIR`` points
at another folder of the same layout."""

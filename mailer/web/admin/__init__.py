"""The admins' side of the web app: the API under /api/ and the dashboard under /admin/, both behind
admin authentication (auth.py)."""

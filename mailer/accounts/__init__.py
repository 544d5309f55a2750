"""Admin users and their API tokens: the tables, their queries and password hashing. No web, no CLI."""

"""The family's web edge: a JSON API (FastAPI) over holders, payments, notify, rating and the ledger,
with its own sign-in (argon2 passwords, sessions and bearer tokens). docs/web.md tells the whole story.

An edge like callcontrol: it may import the libraries, never callcontrol (and callcontrol never imports
it, except by name from the process entry point, callcontrol/cli.py)."""

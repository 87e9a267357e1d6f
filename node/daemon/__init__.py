"""The daemon: one trio process running the state service, chain watcher, sender and API."""

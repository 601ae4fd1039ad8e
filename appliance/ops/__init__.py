"""Operating the box: the offline installer bundle, the systemd service, backups and
restores, upgrades of a home, and the process's logs."""

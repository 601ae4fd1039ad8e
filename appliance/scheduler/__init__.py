"""The scheduler: APScheduler jobs, pipelines and their persisted runs, acting as the
``scheduler`` actor through the same services as the CLI. Lands with the release and
monitoring issue."""

"""``falaj pipelines ...`` and ``falaj jobs``: pipelines, their runs and scheduled jobs."""

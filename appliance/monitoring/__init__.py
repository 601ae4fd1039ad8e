"""Monitoring: drift of live traffic against a model's training reference, live
metrics and alerts. The decision log (``appliance.serving.decision_log``) is its input;
the drift statistics are the kernels' (``kernels.stats``). Lands with the release and
monitoring issue."""

"""Human feedback: the label store, the annotation web app, agreement, interop and the CLI."""

"""Jobs: dict in, dict out, with progress and cancel points; the CLI, the service and the recorder call them."""

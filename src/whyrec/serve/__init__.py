"""The HTTP service and the web chat page: a thin shell over the engine and conversation."""

"""The HTTP API: the FastAPI app and its routers."""

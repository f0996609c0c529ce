"""The web service: a FastAPI app with ``POST /api/v1/detect`` and a page at ``/``.

``mesonet serve`` runs it with uvicorn; ``create_app`` builds it for other servers and tests.
"""

from mesonet.serve.app import create_app

__all__ = ["create_app"]

"""`mesonet serve`: the web service, a page at / and the API at /api/v1/detect."""

from __future__ import annotations

from typing import Annotated

import typer

from mesonet.cli.console import err
from mesonet.cli.options import (
    MaxFrameOption,
    MaxMemoryOption,
    MaxSecondsOption,
    ModelOption,
    TrustOption,
    analysis_limits,
)


def serve_command(
    host: Annotated[str, typer.Option(help="Address to listen on.", metavar="HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", metavar="PORT")] = 8000,
    model: ModelOption = None,
    max_upload_mb: Annotated[
        float, typer.Option(help="Larger uploads are refused (413).", metavar="MB")
    ] = 200,
    max_in_flight: Annotated[
        int, typer.Option(help="Analyses running at once; more wait, then get 503.", metavar="N")
    ] = 2,
    max_uploads: Annotated[
        int,
        typer.Option(help="Uploads received at once; more are answered 503 at once.", metavar="N"),
    ] = 32,
    read_idle_s: Annotated[
        float,
        typer.Option(
            help="Drop an upload (408) that sends nothing for this many seconds.", metavar="SECONDS"
        ),
    ] = 30.0,
    read_total_s: Annotated[
        float,
        typer.Option(
            help="Drop an upload (408) still arriving after this many seconds.", metavar="SECONDS"
        ),
    ] = 600.0,
    trust_unverified: TrustOption = False,
    max_frame_mp: MaxFrameOption = 8.3,
    max_seconds: MaxSecondsOption = 300.0,
    max_memory_mb: MaxMemoryOption = 2048.0,
) -> None:
    """Run the web service: a page at / and the API at /api/v1/detect (docs at /docs)."""
    import uvicorn

    from mesonet.serve import create_app
    from mesonet.serve.listen import listen_socket

    if not 0 < port < 65536:
        raise typer.BadParameter("must be from 1 to 65535", param_hint="--port")
    if not max_upload_mb > 0:
        raise typer.BadParameter("must be positive", param_hint="--max-upload-mb")
    if max_in_flight < 1:
        raise typer.BadParameter("must be at least 1", param_hint="--max-in-flight")
    if max_uploads < 1:
        raise typer.BadParameter("must be at least 1", param_hint="--max-uploads")
    for value, name in ((read_idle_s, "--read-idle-s"), (read_total_s, "--read-total-s")):
        if not value > 0:
            raise typer.BadParameter("must be positive", param_hint=name)
    limits = analysis_limits(max_frame_mp, max_seconds, max_memory_mb)
    sock = listen_socket(host, port)  # a port in use: one line and exit 2, before any banner
    with sock:
        web = create_app(
            model,
            max_upload_mb=max_upload_mb,
            max_in_flight=max_in_flight,
            trust_unverified=trust_unverified,
            limits=limits,
            max_uploads=max_uploads,
            read_idle_s=read_idle_s,
            read_total_s=read_total_s,
        )
        shown = f"[{host}]" if ":" in host else host
        err.print(f"mesonet serving on http://{shown}:{port}/ (API docs at /docs); Ctrl+C stops")
        config = uvicorn.Config(web, host=host, port=port, log_level="info")
        uvicorn.Server(config).run(sockets=[sock])
